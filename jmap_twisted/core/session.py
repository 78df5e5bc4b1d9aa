"""
The JMAP Session object (RFC 8620 §2).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from jmap_twisted.core.registry import CORE, Registry
from jmap_twisted.interfaces import IPrincipal
from jmap_twisted.records import Account, User

#: Paths below the URL of the JMAP resource tree (``/jmap`` on this
#: project's own site; wherever an embedder mounts it otherwise).
API_PATH = "/api/"
UPLOAD_PATH = "/upload/{accountId}/"
DOWNLOAD_PATH = "/download/{accountId}/{blobId}/{name}?type={type}"
EVENT_SOURCE_PATH = "/eventsource/?types={types}&closeafter={closeafter}&ping={ping}"
WEBSOCKET_PATH = "/ws"
TICKET_PATH = "/ticket"
WEBSOCKET = "urn:ietf:params:jmap:websocket"
TICKETS = "com:linagora:params:jmap:ws:ticket"


def _accounts(principal: IPrincipal, registry: Registry) -> dict[str, Any]:
    account_capabilities = {
        urn: dict(cap.account)
        for urn, cap in registry.capabilities.items()
        if cap.account is not None
    }
    return {
        account.id: {
            "name": account.name,
            "isPersonal": account.owner_id == principal.user.id,
            "isReadOnly": False,
            "accountCapabilities": account_capabilities,
        }
        for account in principal.accounts
    }


def _primary_accounts(principal: IPrincipal, registry: Registry) -> dict[str, str]:
    personal = [a for a in principal.accounts if a.owner_id == principal.user.id]
    if not personal:
        return {}
    return {
        urn: personal[0].id
        for urn, cap in registry.capabilities.items()
        if cap.account is not None or urn == CORE
    }


def _content(principal: IPrincipal, registry: Registry) -> dict[str, Any]:
    return {
        "capabilities": {urn: dict(cap.session) for urn, cap in registry.capabilities.items()},
        "accounts": _accounts(principal, registry),
        "primaryAccounts": _primary_accounts(principal, registry),
        "username": principal.user.username,
    }


def session_state(principal: IPrincipal, registry: Registry) -> str:
    """
    A string that changes whenever the session's content (capabilities,
    accounts, username) changes, and only then.
    """
    return _state(principal.user, tuple(principal.accounts), registry)


@lru_cache(maxsize=4096)
def _state(user: User, accounts: tuple[Account, ...], registry: Registry) -> str:
    # Every Response carries the session state; the content it hashes
    # changes rarely, so the hash is remembered per (user, accounts).
    content = _content(_Viewer(user, accounts), registry)  # type: ignore[arg-type]
    canonical = json.dumps(content, sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


class _Viewer:
    def __init__(self, user: User, accounts: tuple[Account, ...]) -> None:
        self.user = user
        self.accounts = accounts


def session_object(
    principal: IPrincipal, registry: Registry, base_url: str, push: bool = True
) -> dict[str, Any]:
    """
    The Session object for a user, with absolute URLs below ``base_url``
    (the URL of the JMAP resource tree, no trailing slash).

    :param push: whether push is delivered now; when not, the WebSocket
        capability says ``supportsPush: false``.
    """
    session = _content(principal, registry)
    session.update(
        {
            "apiUrl": base_url + API_PATH,
            "downloadUrl": base_url + DOWNLOAD_PATH,
            "uploadUrl": base_url + UPLOAD_PATH,
            "eventSourceUrl": base_url + EVENT_SOURCE_PATH,
            "state": session_state(principal, registry),
        }
    )
    # URLs follow the request, so they are filled in after the state is
    # computed: they are not part of what a client caches by state.
    capabilities = session["capabilities"]
    if WEBSOCKET in capabilities:
        ws_base = "wss" + base_url[5:] if base_url.startswith("https") else "ws" + base_url[4:]
        capabilities[WEBSOCKET] = {**capabilities[WEBSOCKET], "url": ws_base + WEBSOCKET_PATH}
        if not push:
            capabilities[WEBSOCKET]["supportsPush"] = False
    if TICKETS in capabilities:
        capabilities[TICKETS] = {
            **capabilities[TICKETS],
            "generationEndpoint": base_url + TICKET_PATH,
            "revocationEndpoint": base_url + TICKET_PATH,
        }
    return session


def capabilities_changed() -> None:
    """
    Forget the remembered session states: a capability's content changed
    (a key was rotated), so every session's state must change too.
    """
    _state.cache_clear()
