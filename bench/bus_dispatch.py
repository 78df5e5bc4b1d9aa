"""
In-memory bus overhead: one StateChange to one listener among N registered
(a dictionary lookup), and one event dispatched to N keys with a listener
each.

    python bench/bus_dispatch.py --listeners 10000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from jmap_twisted.bus.deadletters import MemoryDeadLetters
from jmap_twisted.bus.events import SYNCHRONOUS, AccountKey, StateChange
from jmap_twisted.bus.memory import InMemoryEventBus
from jmap_twisted.interfaces import IEventListener


@implementer(IEventListener)
class Counter:
    execution_mode = SYNCHRONOUS

    def __init__(self) -> None:
        self.count = 0

    def is_handling(self, event: object) -> bool:
        return True

    def handle(self, event: object) -> object:
        self.count += 1
        return succeed(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listeners", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    bus = InMemoryEventBus(Clock(), MemoryDeadLetters())
    listeners = [Counter() for _ in range(args.listeners)]
    for index, listener in enumerate(listeners):
        bus.register(listener, [AccountKey(f"a{index}")])
    one = []
    for index in range(args.repeat):
        key = AccountKey(f"a{index % args.listeners}")
        event = StateChange(key.account_id, {"Email": "1"})
        started = time.perf_counter()
        bus.dispatch(event, [key])
        one.append((time.perf_counter() - started) * 1e6)
    keys = [AccountKey(f"a{i}") for i in range(args.listeners)]
    many = []
    for _ in range(20):
        started = time.perf_counter()
        bus.dispatch(StateChange("all", {"Email": "1"}), keys)
        many.append((time.perf_counter() - started) * 1000)
    print(
        f"one listener among {args.listeners}: median {statistics.median(one):.1f} us, max {max(one):.1f} us"
    )
    print(
        f"{args.listeners} keys, one listener each: median {statistics.median(many):.1f} ms, max {max(many):.1f} ms"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "listeners": args.listeners,
                    "one_among_us": {"median": statistics.median(one), "max": max(one)},
                    "all_keys_ms": {"median": statistics.median(many), "max": max(many)},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
