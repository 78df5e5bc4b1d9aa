"""
A throwaway OpenID provider for tests: ``tests/oidc/provider.mjs`` (the
certified ``oidc-provider`` package on Node.js) on a free loopback port,
with the clients the integration tests use.

``scripts/test`` installs the package (``npm ci --prefix tests/oidc``).
When Node.js or the package is missing, :func:`start_provider_or_skip`
skips the test, except under CI (``CI`` set), where it fails: the tests
that need a provider must run there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

import pytest

from tests.services.rabbitmq import free_port

#: Where the provider's script and its npm package are.
ROOT = Path(__file__).parents[1] / "oidc"
#: The audience the provider issues tokens for.
AUDIENCE = "https://jmap.test"
#: Seconds the provider has to start answering.
START_TIMEOUT = 60.0


class ProviderUnavailable(RuntimeError):
    """
    Node.js or the package is missing, or the provider did not start.
    """


class OIDCProvider:
    """
    One running provider.

    :ivar issuer: its issuer identifier, ``http://127.0.0.1:PORT``.
    """

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.issuer = f"http://127.0.0.1:{port}"

    def _open(self, request: urllib.request.Request | str) -> Any:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def discovery(self) -> dict[str, Any]:
        document: dict[str, Any] = self._open(self.issuer + "/.well-known/openid-configuration")
        return document

    def token(self, client_id: str) -> dict[str, Any]:
        """
        The answer of the token endpoint to the client_credentials grant of
        a client (secret ``{client_id}-secret``) for :data:`AUDIENCE`.
        """
        credentials = b64encode(f"{client_id}:{client_id}-secret".encode()).decode()
        body = f"grant_type=client_credentials&scope=jmap&resource={AUDIENCE}".encode()
        request = urllib.request.Request(
            self.issuer + "/token",
            data=body,
            headers={
                "Authorization": "Basic " + credentials,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        answer: dict[str, Any] = self._open(request)
        return answer

    def access_token(self, client_id: str) -> str:
        return str(self.token(client_id)["access_token"])

    def jwks_served(self) -> int:
        """
        How many times the provider has served its key set.
        """
        return int(self._open(self.issuer + "/test/jwks-served")["count"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.unlink(missing_ok=True)


def start_provider(audience: str = AUDIENCE) -> OIDCProvider:
    """
    Start a provider and wait until its discovery document answers.

    :raises ProviderUnavailable: Node.js or the package is missing, or it
        did not start.
    """
    node = shutil.which("node")
    if node is None:
        raise ProviderUnavailable("Node.js is not installed (scripts/install-services)")
    if not (ROOT / "node_modules" / "oidc-provider").is_dir():
        raise ProviderUnavailable("oidc-provider is not installed: npm ci --prefix tests/oidc")
    port = free_port()
    descriptor, name = tempfile.mkstemp(prefix="oidc-provider-", suffix=".log")
    os.close(descriptor)
    log = Path(name)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [node, "provider.mjs", str(port), audience],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    provider = OIDCProvider(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            tail = log.read_text()[-2000:]
            provider.stop()
            raise ProviderUnavailable(f"the provider exited: {tail}")
        try:
            provider.discovery()
            return provider
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                tail = log.read_text()[-2000:]
                provider.stop()
                raise ProviderUnavailable(f"the provider did not answer: {tail}") from None
            time.sleep(0.1)


def start_provider_or_skip(audience: str = AUDIENCE) -> OIDCProvider:
    """
    :func:`start_provider`, skipping the test when it cannot (failing it
    under CI).
    """
    try:
        return start_provider(audience)
    except ProviderUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e} (CI is set, so this is not skipped)")
        pytest.skip(str(e))
