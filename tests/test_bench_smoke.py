"""
Every benchmark still runs (at a tiny size) and the report renders.
Figures are not checked: benchmarks measure, tests assert behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_benchmarks_run_at_tiny_size(tmp_path: Path) -> None:
    """
    ``bench/run.py --size tiny`` runs each benchmark against its own
    server, writes its JSON, and renders the report with its plots.
    """
    report = tmp_path / "docs" / "benchmarks.md"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--size",
            "tiny",
            "--pause",
            "0",
            "--out",
            str(tmp_path / "results"),
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = {p.stem for p in (tmp_path / "results").glob("*.json")}
    assert names == {
        "push",
        "idle",
        "eventsource",
        "webpush",
        "throughput",
        "compression",
        "resync",
        "lmtp_delivery",
        "store_query",
        "store_delivery",
        "bus_dispatch",
        "multinode",
        "delivery_cpu",
        "fanout",
        "capacity",
    }
    for path in (tmp_path / "results").glob("*.json"):
        assert json.loads(path.read_text())
    text = report.read_text()
    assert text.count("| `bench/") >= 12
    assert sorted(p.name for p in (report.parent / "img").glob("*.png")) == [
        "memory_per_socket.png",
        "push_latency_cdf.png",
        "query_cdf.png",
    ]


@pytest.mark.integration
def test_soak_runs_at_tiny_size(tmp_path: Path) -> None:
    """
    ``bench/soak.py`` keeps WebSocket and EventSource connections open
    while mail arrives, samples the server and plots the samples (here
    briefly, a few connections, no broker).
    """
    results, plot = tmp_path / "soak.json", tmp_path / "soak.png"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            *("--minutes", "0.2", "--sockets", "6", "--accounts", "2", "--rate", "4"),
            *("--interval", "3", "--no-bus", "--json", str(results), "--plot", str(plot)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    samples = json.loads(results.read_text())["samples"]
    assert samples and samples[-1]["connections"] == 6
    assert samples[-1]["mails"] > 0 and samples[-1]["frames"] > 0
    assert plot.read_bytes().startswith(b"\x89PNG")
