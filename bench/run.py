"""
Run every benchmark and render ``docs/benchmarks.md``.

    python bench/run.py               # full size (about 10 minutes)
    python bench/run.py --size tiny   # seconds: checks that each still works

Each benchmark runs in its own process (each starts its own server unless
given a target; the target options are passed through), writes its JSON
into ``--out`` (default ``bench/results``), and the report is rendered
from those files with plots.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SIZES = {
    "tiny": {
        "push": ["--idle", "10,20", "--fanout", "3,5", "--deliveries", "5"],
        "idle": ["--sockets", "50", "--interval", "2", "--rounds", "2", "--deliveries", "5"],
        "eventsource": ["--deliveries", "5"],
        "webpush": ["--deliveries", "5"],
        "throughput": ["--requests", "100", "--rounds", "1"],
        "compression": ["--messages", "5"],
        "resync": ["--messages", "50"],
        "lmtp_delivery": ["--messages", "40", "--connections", "2"],
        "store_query": ["--messages", "500", "--runs", "5", "--recounts", "2", "--writes", "20"],
        "store_delivery": ["--size", "tiny"],
        "bus_dispatch": ["--listeners", "1000", "--repeat", "20"],
        "multinode": ["--deliveries", "5", "--messages", "40", "--events", "500", "--rate", "500"],
        "delivery_cpu": ["--deliveries", "20", "--rounds", "1"],
        "fanout": [
            "--sockets",
            "20",
            "--deliveries",
            "3",
            "--rate-deliveries",
            "10",
            "--rounds",
            "1",
        ],
        "capacity": [
            *("--calibrate", "20/4", "--sizes", "10/2@2,30/6@4", "--interval", "2"),
            *("--base-window", "1", "--deliveries", "10", "--fanout", "5"),
        ],
    },
    "full": {
        "push": ["--idle", "1000,10000", "--fanout", "100,1000", "--deliveries", "50"],
        "idle": ["--sockets", "19000", "--interval", "30", "--rounds", "2", "--deliveries", "50"],
        "eventsource": ["--deliveries", "50"],
        "webpush": ["--deliveries", "50"],
        "throughput": ["--requests", "2000"],
        "compression": ["--messages", "50"],
        "resync": ["--messages", "10000"],
        "lmtp_delivery": ["--messages", "1600", "--connections", "8"],
        "store_query": ["--messages", "100000"],
        "store_delivery": ["--size", "full"],
        "bus_dispatch": ["--listeners", "10000"],
        "multinode": ["--deliveries", "200", "--messages", "1000", "--events", "20000"],
        "delivery_cpu": ["--deliveries", "200", "--rounds", "5"],
        "fanout": [
            "--sockets",
            "1000",
            "--deliveries",
            "20",
            "--rate-deliveries",
            "200",
            "--rounds",
            "3",
        ],
        "capacity": ["--calibrate", "1000/100", "--sizes", "2000/200@10,8000/800@40"],
    },
}

#: Benchmarks that measure a baseline tree beside this one in the same run.
BASELINED = {"idle", "throughput", "delivery_cpu"}

#: Benchmarks that take the target options (the others measure the store
#: and the bus in-process).
TARGETED = {"push", "eventsource", "throughput", "compression", "resync", "lmtp_delivery"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--report", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    parser.add_argument("--only", action="append", help="run only these benchmarks")
    parser.add_argument(
        "--pause", type=float, default=5.0, help="seconds between benchmarks (default 5)"
    )
    parser.add_argument(
        "--baseline-checkout",
        help="another source tree (a git worktree of an earlier commit) that the benchmarks"
        " comparing before and after run beside this one: " + ", ".join(sorted(BASELINED)),
    )
    args, target = parser.parse_known_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, options in SIZES[args.size].items():
        if args.only and name not in args.only:
            continue
        started = time.monotonic()
        command = [
            sys.executable,
            str(HERE / f"{name}.py"),
            *options,
            "--json",
            str(args.out / f"{name}.json"),
        ]
        if name in TARGETED:
            command += target
        if args.baseline_checkout and name in BASELINED:
            command += ["--baseline-checkout", args.baseline_checkout]
        print(f"== {name}: {' '.join(command[2:])}", flush=True)
        result = subprocess.run(command, check=False)
        print(
            f"== {name}: exit {result.returncode} in {time.monotonic() - started:.0f} s", flush=True
        )
        if result.returncode:
            failed.append(name)
        # Let the previous benchmark's processes and sockets wind down (a
        # server closing 10,000 sockets still takes CPU for a while).
        time.sleep(args.pause)
    subprocess.run(
        [
            sys.executable,
            str(HERE / "report.py"),
            "--results",
            str(args.out),
            "--output",
            str(args.report),
        ],
        check=True,
    )
    if failed:
        raise SystemExit("failed: " + ", ".join(failed))


if __name__ == "__main__":
    main()
