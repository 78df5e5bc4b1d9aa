"""
Test doubles shared by the unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock

from jmap_twisted.auth.passwords import PasswordHasher

#: Cheap scrypt parameters: tests check behaviour, not cost.
CHEAP_HASHER = PasswordHasher(n=2**4)


class _ImmediateThreadPool:
    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], None], f: Callable[..., Any], *a: Any, **kw: Any
    ) -> None:
        try:
            result = f(*a, **kw)
        except BaseException as e:
            onResult(False, e)
        else:
            onResult(True, result)


class ImmediateReactor(Clock):
    """
    A :class:`Clock` whose "threads" run work at once on the calling thread,
    so code that defers to a thread pool can be tested synchronously.
    """

    def getThreadPool(self) -> _ImmediateThreadPool:
        return _ImmediateThreadPool()

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        f(*a, **kw)

    def callInThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        f(*a, **kw)


def jmap_service(*args: Any, **kwargs: Any) -> Any:
    """
    The life cycle of a :class:`~jmap_twisted.server.JMAPServer` built from
    these arguments (its site is ``.site``, the server ``.server``).
    """
    from jmap_twisted.server import JMAPServer
    from jmap_twisted.service import JMAPService

    return JMAPService(JMAPServer(*args, **kwargs))
