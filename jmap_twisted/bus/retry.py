"""
Retrying failed group deliveries: exponential backoff with jitter.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class RetryPolicy:
    """
    How a failed group delivery is retried before it is dead-lettered.

    The n-th retry (n ≥ 1) waits ``first_backoff * 2**(n-1)`` seconds,
    lengthened by up to ``jitter`` of itself at random so that retries of
    many events do not arrive together.

    :ivar max_retries: retries after the first attempt.
    """

    max_retries: int = 3
    first_backoff: float = 0.1
    jitter: float = 0.5

    def delay(self, retry: int, random: float) -> float:
        """
        Seconds before retry number ``retry``, given a uniform random
        number in [0, 1).
        """
        base = self.first_backoff * 2 ** (retry - 1)
        return base * (1 + self.jitter * random)
