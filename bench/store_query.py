"""
Micro-benchmark of the SQLite mail store (not a test).

Fills a temporary database with N small synthetic messages in one mailbox,
then measures:

- the mailbox listing ``Email/query`` issues most: ``inMailbox`` sorted by
  ``receivedAt`` descending, the first 50, with the total — timed inside the
  reader function (server time, without thread hand-offs);
- what ``Mailbox/get`` with counts reads: every mailbox and its counts
  (counters), timed inside the reader function; beside it, in the same
  run, a recount of every count from the emails' rows (what the repair
  does, and what answering from aggregates costs);
- delivery throughput: one ``add_email`` per write transaction (each one
  fsynced, as with LMTP), awaited one after the other.

Run::

    python bench/store_query.py --messages 100000
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import task

from jmap_twisted.interfaces import IMailReader, IMailWriter
from jmap_twisted.records import Recount
from jmap_twisted.store.sql.mail import SQLWriter
from jmap_twisted.store.sqlite.database import SQLiteDatabase
from jmap_twisted.store.sqlite.mail import SQLiteMailStore

ACCOUNT = "abench00000000001"
NEWEST = [{"property": "receivedAt", "isAscending": False}]


def synthetic(n: int) -> bytes:
    """
    A small message, different for every ``n``.
    """
    return (
        f"From: Sender {n % 97} <sender{n % 97}@example.com>\r\n"
        f"To: bench@example.org\r\n"
        f"Subject: Message number {n} about topic {n % 13}\r\n"
        f"Date: Tue, 24 Nov 2026 10:{n % 60:02d}:00 +0000\r\n"
        f"Message-ID: <bench-{n}@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"Hello, this is synthetic message {n}.\r\n"
        "It has a couple of lines of text so the preview is not empty.\r\n"
    ).encode()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def fill(store: SQLiteMailStore, inbox: str, count: int, batch: int) -> float:
    started = time.perf_counter()
    for first in range(0, count, batch):
        numbers = range(first, min(count, first + batch))

        def add_batch(writer: IMailWriter, numbers: range = numbers) -> None:
            for n in numbers:
                writer.add_email(synthetic(n), [inbox], ("$seen",) if n % 3 else (), 1e9 + n)

        await store.write(ACCOUNT, add_batch)
        done = numbers.stop
        if done % (batch * 20) == 0 or done == count:
            rate = done / (time.perf_counter() - started)
            print(f"  filled {done:>7} messages ({rate:,.0f}/s)", flush=True)
    return time.perf_counter() - started


async def time_queries(store: SQLiteMailStore, inbox: str, runs: int) -> list[float]:
    def timed(reader: IMailReader) -> tuple[float, int, int]:
        started = time.perf_counter()
        found, total = reader.query_emails({"inMailbox": inbox}, NEWEST, False, 0, 50)
        return time.perf_counter() - started, len(found), total

    samples = []
    for _ in range(runs):
        elapsed, found, total = await store.read(ACCOUNT, timed)
        samples.append(elapsed * 1000)
    print(f"  each query returned {found} ids of {total}")
    return samples


async def time_counts(store: SQLiteMailStore, runs: int) -> list[float]:
    """
    Server time of what ``Mailbox/get`` reads: the mailboxes and their counts.
    """

    def timed(reader: IMailReader) -> tuple[float, int]:
        started = time.perf_counter()
        mailboxes = reader.mailboxes()
        counts = reader.mailbox_counts([m.id for m in mailboxes])
        return time.perf_counter() - started, sum(c.total_emails for c in counts.values())

    samples = []
    for _ in range(runs):
        elapsed, total = await store.read(ACCOUNT, timed)
        samples.append(elapsed * 1000)
    print(f"  the counts add up to {total} emails")
    return samples


async def time_recounts(store: SQLiteMailStore, runs: int) -> list[float]:
    """
    Server time of recounting every count from the emails' rows.
    """

    def timed(writer: IMailWriter) -> tuple[float, Recount]:
        assert isinstance(writer, SQLWriter)
        started = time.perf_counter()
        repaired = writer.recount()
        return time.perf_counter() - started, repaired

    samples = []
    for _ in range(runs):
        elapsed, repaired = await store.write(ACCOUNT, timed)
        assert repaired == Recount(), repaired
        samples.append(elapsed * 1000)
    return samples


def figures(samples: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(samples),
        "p99": percentile(samples, 0.99),
        "max": max(samples),
        "samples": samples,
    }


async def deliver(store: SQLiteMailStore, inbox: str, writes: int, start: int) -> float:
    started = time.perf_counter()
    for n in range(start, start + writes):
        await store.write(
            ACCOUNT,
            lambda w, n=n: w.add_email(synthetic(n), [inbox], (), 2e9 + n),
            delivery=True,
        )
    return writes / (time.perf_counter() - started)


async def main(reactor: Any, options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="jmap-bench-") as directory:
        db = SQLiteDatabase(str(Path(directory) / "mail.sqlite3"), reactor)
        await db.start()
        try:
            store = SQLiteMailStore(db, reactor)
            await store.setup_account(ACCOUNT)
            mailboxes = await store.read(ACCOUNT, lambda r: r.mailboxes())
            inbox = next(m.id for m in mailboxes if m.role == "inbox")
            print(f"Filling {options.messages} messages in batches of {options.batch}…")
            seconds = await fill(store, inbox, options.messages, options.batch)
            print(f"  filled in {seconds:.1f} s")
            samples = await time_queries(store, inbox, options.runs)
            print(
                f"Query inMailbox + receivedAt desc + limit 50 (server time, {options.runs} runs):"
                f" median {statistics.median(samples):.2f} ms,"
                f" p99 {percentile(samples, 0.99):.2f} ms"
            )
            counts = await time_counts(store, options.runs)
            recounts = await time_recounts(store, options.recounts)
            print(
                f"Mailbox/get with counts (server time, {options.runs} runs):"
                f" median {statistics.median(counts):.3f} ms, p99 {percentile(counts, 0.99):.3f} ms;"
                f" recount from the rows ({options.recounts} runs):"
                f" median {statistics.median(recounts):.1f} ms"
            )
            rate = await deliver(store, inbox, options.writes, options.messages)
            print(
                f"Delivery, one message per write ({options.writes} writes): {rate:.0f} messages/s"
            )
            if options.json:
                options.json.write_text(
                    json.dumps(
                        {
                            "messages": options.messages,
                            "query_ms": figures(samples),
                            "mailbox_counts_ms": figures(counts),
                            "recount_ms": figures(recounts),
                            "one_message_writes_per_second": rate,
                        },
                        indent=2,
                    )
                )
        finally:
            await db.stop()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages to fill in")
    parser.add_argument("--batch", type=int, default=1000, help="messages per fill write")
    parser.add_argument("--runs", type=int, default=50, help="query repetitions")
    parser.add_argument("--recounts", type=int, default=5, help="recount repetitions")
    parser.add_argument("--writes", type=int, default=500, help="one-message writes to time")
    parser.add_argument("--json", type=Path, help="write the figures here")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    task.react(main, [arguments])
