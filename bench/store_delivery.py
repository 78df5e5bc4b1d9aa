"""
Store-level delivery throughput, PostgreSQL against SQLite (not a test).

Each delivery is one ``IMailStore.write`` transaction that parses and
stores a ~4 KB message with ``add_email`` into the inbox, with
``delivery=True``, as LMTP does; the Deferred fires after the commit.
Measured per backend, in the same run:

- sequential: one writer, each write awaited before the next;
- concurrent: ``--writers`` writers at once, each on its own account (one
  account's writes are serialised by design).

Every measurement is repeated ``--rounds`` times; the median rate is
reported, with per-write latencies.  PostgreSQL is a throwaway cluster
started here with its default durability (``fsync`` and
``synchronous_commit`` on), unless ``--dsn`` names another database;
SQLite runs with ``synchronous=FULL`` in a temporary directory.

Run::

    python bench/store_delivery.py --size full
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import message, summary
from twisted.internet import defer, task

from jmap_twisted.interfaces import IMailStore, IMailWriter

SIZES = {
    "tiny": {"messages": 40, "rounds": 1},
    "full": {"messages": 1000, "rounds": 3},
}

#: Body size that makes a message of about 4 KB with its header.
BODY = 3800


@asynccontextmanager
async def sqlite_store(reactor: Any, options: argparse.Namespace) -> AsyncIterator[IMailStore]:
    from jmap_twisted.store.sqlite.database import SQLiteDatabase
    from jmap_twisted.store.sqlite.mail import SQLiteMailStore

    with tempfile.TemporaryDirectory(prefix="jmap-bench-") as directory:
        db = SQLiteDatabase(str(Path(directory) / "mail.sqlite3"), reactor)
        await db.start()
        try:
            yield SQLiteMailStore(db, reactor)
        finally:
            await db.stop()


@asynccontextmanager
async def postgres_store(reactor: Any, options: argparse.Namespace) -> AsyncIterator[IMailStore]:
    from jmap_twisted.store.postgres.database import PostgresDatabase
    from jmap_twisted.store.postgres.mail import PostgresMailStore

    cluster = None
    dsn = options.dsn
    if dsn is None:
        from tests.services.postgres import start_cluster

        cluster = start_cluster(durable=True)
        dsn = cluster.create_database()
    try:
        db = PostgresDatabase(dsn, reactor, pool_size=options.pool_size)
        await db.start()
        try:
            yield PostgresMailStore(db, reactor)
        finally:
            await db.stop()
    finally:
        if cluster is not None:
            cluster.stop()


BACKENDS: dict[str, Callable[[Any, argparse.Namespace], Any]] = {
    "sqlite": sqlite_store,
    "postgres": postgres_store,
}


async def inbox_of(store: IMailStore, account: str) -> str:
    await store.setup_account(account)
    boxes = await store.read(account, lambda r: r.mailboxes())
    return next(m.id for m in boxes if m.role == "inbox")


async def writer(
    store: IMailStore, account: str, inbox: str, first: int, count: int, latencies: list[float]
) -> None:
    for n in range(first, first + count):
        raw = message(n, BODY)

        def add(w: IMailWriter, raw: bytes = raw, n: int = n) -> Any:
            return w.add_email(raw, [inbox], (), 1e9 + n)

        started = time.perf_counter()
        await store.write(account, add, delivery=True)
        latencies.append((time.perf_counter() - started) * 1000)


async def measure(
    store: IMailStore, writers: int, messages: int, first: int
) -> tuple[float, list[float]]:
    """
    Deliver ``messages`` with ``writers`` concurrent writers (one account
    each); return the rate in messages per second and the latencies in ms.
    """
    accounts = [f"abench{writers:02d}{i:09d}" for i in range(writers)]
    inboxes = [await inbox_of(store, account) for account in accounts]
    latencies: list[float] = []
    share = messages // writers
    started = time.perf_counter()
    await defer.gatherResults(
        [
            defer.ensureDeferred(writer(store, account, inbox, first + i * share, share, latencies))
            for i, (account, inbox) in enumerate(zip(accounts, inboxes, strict=True))
        ]
    )
    return share * writers / (time.perf_counter() - started), latencies


async def main(reactor: Any, options: argparse.Namespace) -> None:
    size = SIZES[options.size]
    messages = options.messages or size["messages"]
    rounds = options.rounds or size["rounds"]
    print(f"~{len(message(0, BODY))} octets per message, {messages} per measurement")
    results: dict[str, Any] = {"messages": messages, "rounds": rounds, "backends": {}}
    for name in options.backend or sorted(BACKENDS):
        async with BACKENDS[name](reactor, options) as store:
            figures: dict[str, Any] = {}
            for label, writers in (("sequential", 1), ("concurrent", options.writers)):
                rates: list[float] = []
                latencies: list[float] = []
                for round_number in range(rounds):
                    first = (round_number + (writers > 1) * rounds) * messages
                    rate, samples = await measure(store, writers, messages, first)
                    rates.append(rate)
                    latencies += samples
                figures[label] = {
                    "writers": writers,
                    "mails_per_second": statistics.median(rates),
                    "rates": rates,
                    "latency_ms": summary(latencies),
                }
                print(
                    f"{name:>8} {label:>10} ({writers} writer{'s' * (writers > 1)}):"
                    f" median {statistics.median(rates):7.0f} mails/s,"
                    f" latency median {statistics.median(latencies):.2f} ms"
                )
            results["backends"][name] = figures
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--messages", type=int, help="messages per measurement")
    parser.add_argument("--rounds", type=int, help="repetitions of each measurement")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writers")
    parser.add_argument("--pool-size", type=int, default=8, help="PostgreSQL pool size")
    parser.add_argument(
        "--dsn", help="PostgreSQL database to use instead of a throwaway cluster (it is filled)"
    )
    parser.add_argument("--backend", action="append", choices=sorted(BACKENDS))
    parser.add_argument("--json", type=Path, help="write the figures here")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    task.react(main, [arguments])
