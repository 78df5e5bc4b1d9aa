"""
Push latency over EventSource (RFC 8620 §7.3): end of LMTP DATA → the
``state`` event at the client.

    python bench/eventsource.py --deliveries 50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import treq
from common import add_target_arguments, open_target, react_and_report, summary
from push import lmtp_deliver
from twisted.internet import defer, task, threads


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    with open_target(args) as server:
        server.api([["Mailbox/get", {"accountId": server.account, "ids": []}, "0"]])
        url = server.session["eventSourceUrl"].format(types="Email", closeafter="no", ping=0)
        arrivals: list[float] = []
        waiting: list[defer.Deferred[None]] = []
        buffer = b""

        def chunk(data: bytes) -> None:
            nonlocal buffer
            now = time.perf_counter()
            buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if event.startswith(b"event: state"):
                    arrivals.append(now)
                    if waiting:
                        waiting.pop(0).callback(None)

        response = await treq.get(url, headers={"Authorization": server.auth}, unbuffered=True)
        stream = treq.collect(response, chunk)
        stream.addErrback(lambda _: None)
        await task.deferLater(reactor, 0.5, lambda: None)
        after_data, after_250 = [], []
        for index in range(args.deliveries):
            arrived: defer.Deferred[None] = defer.Deferred()
            waiting.append(arrived)
            started, replied = await threads.deferToThread(
                lmtp_deliver, server, server.recipient, index
            )
            await arrived
            after_data.append((arrivals[-1] - started) * 1000)
            after_250.append((arrivals[-1] - replied) * 1000)
        response.original.transport.loseConnection() if hasattr(
            response.original, "transport"
        ) else None
    return {
        "eventsource_one_stream": {
            "end_of_data_to_frame_ms": summary(after_data),
            "reply_250_to_frame_ms": summary(after_250),
        }
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=50)
    parser.add_argument("--json", type=Path)
    add_target_arguments(parser)
    args = parser.parse_args()

    def report(results: dict[str, Any]) -> None:
        lat = results["eventsource_one_stream"]["end_of_data_to_frame_ms"]
        print(
            f"EventSource, 1 stream: p50 {lat['median']:.2f} ms, p99 {lat['p99']:.2f} ms, max {lat['max']:.2f} ms"
        )

    react_and_report(run, args, report)


if __name__ == "__main__":
    main()
