"""
The examples of ``docs/embedding.rst``, run as an embedder runs them: on
real loopback sockets, with the real SQLite store.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from base64 import b64encode
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.mail import smtp

from jmap_twisted import ServerConfig
from jmap_twisted.core.limits import CoreLimits
from tests.support import CHEAP_HASHER

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parent.parent / "docs" / "examples"
BASIC = {"Authorization": "Basic " + b64encode(b"alice:secret").decode()}


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def add_alice(service: Any) -> str:
    directory = service.server.directory
    user = await directory.create_user("alice", CHEAP_HASHER.hash("secret"))
    accounts = await directory.accounts_for_user(user.id)
    account_id: str = accounts[0].id
    await service.server.mail.setup_account(account_id)
    return account_id


async def stop(service: Any, stores: Any, *ports: Any) -> None:
    for port in ports:
        await port.stopListening()
    await service.stopService()
    await stores.database.stop()  # the embedder opened them


def config(**limits: Any) -> ServerConfig:
    return ServerConfig(
        password_cost=2**4,
        hostname="mail.example.org",
        domains=("example.org",),
        limits=CoreLimits(**limits),
    )


@pytest_twisted.ensureDeferred
async def test_jmap_mounted_under_a_prefix_of_an_existing_site(tmp_path: Path) -> None:
    """
    Mounted under /mail/jmap of an embedder's site: the site's own page
    still serves; the session at /.well-known/jmap points below the prefix
    and advertises push (the life cycle runs); the API answers there.
    """
    site, service, stores = await example("embed_web").build(reactor, tmp_path, config())
    await add_alice(service)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    base = f"http://127.0.0.1:{port.getHost().port}"
    try:
        page = await treq.get(base + "/")
        assert b"intranet" in await page.content()
        response = await treq.get(base + "/.well-known/jmap", headers=BASIC)
        assert response.code == 200
        session = json.loads(await response.content())
        assert session["apiUrl"] == base + "/mail/jmap/api/"
        assert session["uploadUrl"] == base + "/mail/jmap/upload/{accountId}/"
        websocket = session["capabilities"]["urn:ietf:params:jmap:websocket"]
        assert websocket == {"supportsPush": True, "url": "ws" + base[4:] + "/mail/jmap/ws"}
        assert session["eventSourceUrl"].startswith(base + "/mail/jmap/eventsource/?")
        echo = {
            "using": ["urn:ietf:params:jmap:core"],
            "methodCalls": [["Core/echo", {"hello": True}, "0"]],
        }
        answer = await treq.post(
            session["apiUrl"],
            json.dumps(echo).encode(),
            headers={**BASIC, "Content-Type": "application/json"},
        )
        assert answer.code == 200
        body = json.loads(await answer.content())
        assert body["methodResponses"] == [["Core/echo", {"hello": True}, "0"]]
    finally:
        await stop(service, stores, port)


@pytest_twisted.ensureDeferred
async def test_limits_and_a_secret_free_log_hold_in_a_foreign_site(tmp_path: Path) -> None:
    """
    In a plain twisted.web Site, a request over maxSizeRequest still gets the
    400 ``limit`` problem, and the site's access log shows neither tickets
    nor tokens.
    """
    site, service, stores = await example("embed_web").build(
        reactor, tmp_path, config(max_size_request=1000)
    )
    await add_alice(service)
    log_path = tmp_path / "access.log"
    site.logPath = str(log_path)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    base = f"http://127.0.0.1:{port.getHost().port}/mail/jmap"
    try:
        large = {
            "using": ["urn:ietf:params:jmap:core"],
            "methodCalls": [["Core/echo", {"padding": "x" * 5000}, "0"]],
        }
        body = json.dumps(large).encode()
        assert len(body) > 5000
        response = await treq.post(
            base + "/api/", body, headers={**BASIC, "Content-Type": "application/json"}
        )
        assert response.code == 400
        problem = json.loads(await response.content())
        assert problem["type"] == "urn:ietf:params:jmap:error:limit"
        assert problem["limit"] == "maxSizeRequest"

        issued = await treq.post(base + "/ticket", b"", headers=BASIC)
        assert issued.code == 201
        ticket = json.loads(await issued.content())["value"]
        revoked = await treq.delete(
            base + "/ticket/" + ticket, headers={**BASIC, "Referer": f"https://x/?ticket={ticket}"}
        )
        assert revoked.code == 204
        await treq.get(base + "/session?access_token=sekrit-token-value")
        await treq.get(base + "/eventsource/?types=*&ticket=" + ticket)  # used up: 401
    finally:
        await stop(service, stores, port)
    logged = log_path.read_text()
    assert "/mail/jmap/ticket/REDACTED" in logged
    assert ticket not in logged
    assert "sekrit-token-value" not in logged
    assert logged.count("\n") >= 5


@pytest_twisted.ensureDeferred
async def test_a_twisted_mail_esmtp_server_delivers_and_push_follows(tmp_path: Path) -> None:
    """
    Twisted's own ESMTP protocol with the server's message delivery: the
    message is accepted for a local user only, stored, and a push stream
    open on the JMAP side hears of it.
    """
    factory, service, stores = await example("embed_smtp").build(reactor, tmp_path, config())
    account = await add_alice(service)
    smtp_port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    http_port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(service.site)
    base = f"http://127.0.0.1:{http_port.getHost().port}/jmap"
    try:
        stream = await treq.get(
            base + "/eventsource/?types=*&closeafter=state&ping=0", headers=BASIC, unbuffered=True
        )
        assert stream.code == 200
        received: Deferred[bytes] = treq.content(stream)
        message = b"From: bob@elsewhere.example\r\nSubject: hello\r\n\r\nHi Alice.\r\n"
        sent = await smtp.sendmail(
            "127.0.0.1",
            "bob@elsewhere.example",
            ["alice@example.org"],
            message,
            port=smtp_port.getHost().port,
            requireTransportSecurity=False,
        )
        assert sent[0] == 1  # one recipient accepted
        events = (await received).decode()
        assert "event: state" in events
        data = json.loads(events.split("data: ", 1)[1].split("\n", 1)[0])
        assert "EmailDelivery" in data["changed"][account]
        with pytest.raises(smtp.SMTPDeliveryError):
            await smtp.sendmail(
                "127.0.0.1",
                "bob@elsewhere.example",
                ["nobody@example.org"],
                message,
                port=smtp_port.getHost().port,
                requireTransportSecurity=False,
            )
    finally:
        await stop(service, stores, smtp_port, http_port)


def test_an_own_store_passes_the_shipped_contract() -> None:
    """
    The own-store example passes every test of the shipped mail store
    contract (run as its docstring says).
    """
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "own_store.py"),
        ],
        capture_output=True,
        text=True,
        cwd=EXAMPLES.parent.parent,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    from jmap_twisted.testing import MailStoreContract

    contract = [name for name in dir(MailStoreContract) if name.startswith("test_")]
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{len(contract)} passed"), summary
