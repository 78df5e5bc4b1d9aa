"""
LMTP delivery into the embedded (SQLite) server: mails/s and the time from
end of DATA to ``250``, over one connection and over several at once.

    python bench/lmtp_delivery.py --messages 1000 --connections 4
"""

from __future__ import annotations

import argparse
import json
import smtplib
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_target_arguments, message, open_target, summary


def send(target: Any, start: int, count: int, latencies: list[float]) -> None:
    with smtplib.LMTP(target.lmtp_host, target.lmtp_port) as client:
        for index in range(start, start + count):
            began = time.perf_counter()
            client.sendmail("sender@example.com", [target.recipient], message(index))
            latencies.append((time.perf_counter() - began) * 1000)


def run(args: argparse.Namespace) -> dict[str, object]:
    messages, connections = args.messages, args.connections
    results: dict[str, object] = {}
    with open_target(args) as server:
        send(server, 0, 20, [])  # warm up
        for parallel in sorted({1, connections}):
            latencies: list[float] = []
            per = messages // parallel
            threads = [
                threading.Thread(
                    target=send,
                    args=(server, 100_000 * (i + 1) * parallel, per, latencies),
                )
                for i in range(parallel)
            ]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - began
            results[f"{parallel}_connections"] = {
                "mails_per_second": per * parallel / elapsed,
                "latency_ms": summary(latencies),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--json", type=Path)
    add_target_arguments(parser)
    args = parser.parse_args()
    results = run(args)
    print("connections  mails/s   250 latency p50 / p99 / max (ms)")
    for key, value in results.items():
        lat = value["latency_ms"]  # type: ignore[index]
        print(
            f"{key.split('_')[0]:>11}  {value['mails_per_second']:7.0f}   "  # type: ignore[index]
            f"{lat['median']:.2f} / {lat['p99']:.2f} / {lat['max']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
