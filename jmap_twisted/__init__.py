"""
jmap-twisted: a JMAP mail server on Twisted with push over compressed
WebSockets.

The package root is the public API, in three pieces:

- :class:`JMAPServer`: a server over given stores and a
  :class:`ServerConfig`, a plain container with no life cycle
  (:func:`open_stores` opens the SQLite or PostgreSQL ones named by
  :class:`StoreSettings`);
- its front ends: :func:`resource` (the complete JMAP resource tree, to
  mount under any path of any ``twisted.web`` site), :func:`site` (this
  project's own site around it) and :func:`message_delivery` (for any
  ``twisted.mail`` SMTP or LMTP server);
- :class:`JMAPService`: the server's life cycle (buses, push, pollers,
  pruning, listening ports) for a Twisted application, and
  :func:`make_service`, a whole server from its configuration (what
  ``twistd jmap`` runs).

:mod:`jmap_twisted.interfaces` holds every interface a store, bus or
delivery implements; :mod:`jmap_twisted.testing` the in-memory stores and
the contract suites that check an implementation.  Everything else is an
implementation detail.  Nothing here installs a reactor or loads an
optional driver: each name is imported when first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "JMAPServer",
    "JMAPService",
    "ServerConfig",
    "StoreSettings",
    "Stores",
    "make_service",
    "message_delivery",
    "open_stores",
    "resource",
    "site",
]

_WHERE = {
    "JMAPServer": ("jmap_twisted.server", "JMAPServer"),
    "JMAPService": ("jmap_twisted.service", "JMAPService"),
    "ServerConfig": ("jmap_twisted.config", "ServerConfig"),
    "StoreSettings": ("jmap_twisted.store.backends", "StoreSettings"),
    "Stores": ("jmap_twisted.store.backends", "Stores"),
    "open_stores": ("jmap_twisted.store.backends", "open_stores"),
    "make_service": ("jmap_twisted.service", "make_service"),
    "message_delivery": ("jmap_twisted.mail.front", "message_delivery"),
    "resource": ("jmap_twisted.web", "resource"),
    "site": ("jmap_twisted.web", "jmap_site"),
}

if TYPE_CHECKING:
    from jmap_twisted.config import ServerConfig
    from jmap_twisted.mail.front import message_delivery
    from jmap_twisted.server import JMAPServer
    from jmap_twisted.service import JMAPService, make_service
    from jmap_twisted.store.backends import Stores, StoreSettings, open_stores
    from jmap_twisted.web import jmap_site as site
    from jmap_twisted.web import resource


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'jmap_twisted' has no attribute {name!r}") from None
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
