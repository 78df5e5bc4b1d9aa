"""
A reactor whose thread pool runs work only when a test says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock

from jmap_twisted.auth.passwords import PasswordHasher


class ManualPool:
    """
    A thread pool whose "threads" run only when the test says so.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[[bool, Any], None], Callable[[], Any]]] = []

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], None], f: Callable[..., Any], *a: Any, **kw: Any
    ) -> None:
        self.pending.append((onResult, lambda: f(*a, **kw)))

    def run_one(self) -> None:
        on_result, work = self.pending.pop(0)
        try:
            result = work()
        except BaseException as e:
            on_result(False, e)
        else:
            on_result(True, result)

    def run_all(self) -> None:
        while self.pending:
            self.run_one()


class ManualReactor(Clock):
    """
    A :class:`Clock` with a :class:`ManualPool`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pool = ManualPool()

    def getThreadPool(self) -> ManualPool:
        return self.pool

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        f(*a, **kw)


class CountingHasher(PasswordHasher):
    """
    A cheap hasher that counts its verifications.
    """

    def __init__(self) -> None:
        super().__init__(n=2**4)
        self.verified = 0

    def verify(self, password: str, encoded: str) -> bool:
        self.verified += 1
        return super().verify(password, encoded)
