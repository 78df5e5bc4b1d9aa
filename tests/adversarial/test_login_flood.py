"""
A flood of wrong passwords must not queue unbounded scrypt runs.
The hashing queue is bounded, the attacking address is throttled, and a
user elsewhere, or one whose credentials were verified before, still logs
in within seconds while the server's memory stays bounded.
"""

from __future__ import annotations

import statistics
import threading
import time

import requests

from tests.adversarial.harness import MIB, Attack, Server, well_behaved

#: Where alice logs in from while the flood comes from 127.0.0.1.
ELSEWHERE = "127.0.0.2"


def test_wrong_password_flood_does_not_starve_logins(server: Server) -> None:
    """
    200 threads sending wrong passwords from one address get 401, 429 or
    503 (the last two with ``Retry-After``) within seconds; meanwhile
    alice's first login, from another address, takes less than 10 s, and
    the next ones no longer wait for a hash; the server grows by less than
    150 MiB.
    """
    baseline = server.rss()
    peak = [baseline]
    statuses: dict[int, int] = {}
    durations: list[float] = []
    missing_retry_after: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], server.rss())
            time.sleep(0.1)

    def attack(number: int) -> None:
        name = "mallory" if number % 2 else f"nobody{number}"
        started = time.monotonic()
        response = requests.get(
            server.base + "/jmap/session", auth=(name, f"wrong-{number}"), timeout=120
        )
        durations.append(time.monotonic() - started)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code in (429, 503) and not response.headers.get("Retry-After"):
            missing_retry_after.append(response.status_code)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with Attack(attack, threads=200) as flood:
            time.sleep(3)  # let the flood fill whatever queue there is
            # alice's first login: her password has to be hashed.
            fresh = well_behaved(server, "alice", timeout=120, source=ELSEWHERE)
            # Verified now, her credentials pass without a hash.
            known = well_behaved(server, "alice", timeout=120, source=ELSEWHERE)
            time.sleep(1)
    finally:
        sampling.set()
        sampler.join()
    growth = (peak[0] - baseline) / MIB
    print(
        f"fresh login {fresh:.2f} s, known credentials {known:.2f} s, "
        f"RSS growth {growth:.0f} MiB, attacker answers {statuses}, "
        f"attacker median {statistics.median(durations):.2f} s max {max(durations):.2f} s"
    )
    assert fresh < 10, fresh
    assert known < 10, known
    assert growth < 150, growth
    assert set(statuses) <= {401, 429, 503}, statuses
    assert not missing_retry_after
    assert statistics.median(durations) < 10, statistics.median(durations)
    assert not [e for e in flood.errors if not isinstance(e, requests.RequestException)]
    assert server.alive()
    assert "wrong-" not in server.log()  # no password logged
