"""
Every adversarial test starts a real ``twistd jmap`` with two users:
``mallory`` attacks, ``alice`` is the well-behaved user who must keep being
served.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.harness import Server


@pytest.fixture(autouse=True)
def _integration_marker(request: pytest.FixtureRequest) -> None:
    request.node.add_marker(pytest.mark.integration)


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """
    A server with the options a test names with
    ``@pytest.mark.parametrize("server_options", [...], indirect=False)``
    or the defaults; ``alice`` and ``mallory`` exist.
    """
    options = getattr(request, "param", ())
    running = Server(tmp_path, options)
    try:
        running.add_user("alice")
        running.add_user("mallory")
        yield running
    finally:
        running.stop()
