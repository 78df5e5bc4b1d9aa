"""
Every fuzz harness of ``fuzz/`` runs: its corpus replays cleanly, random
octets pass through it, and (where atheris is installed) a few thousand
coverage-guided inputs do too.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.run import corpus_files
from fuzz.targets import TARGETS, harness
from tests.property.strategies import PROPERTY

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays(target: str) -> None:
    """
    Every input kept in ``fuzz/corpus/<target>/`` passes the harness, and
    each target has seeds.
    """
    inputs = corpus_files(target)
    assert inputs, f"fuzz/corpus/{target}/ is empty"
    function = harness(target)
    for path in inputs:
        function(path.read_bytes())


@pytest.mark.parametrize("target", TARGETS)
def test_random_octets(target: str) -> None:
    """
    Random octets, and corpus inputs with random octets spliced in, pass
    the harness.
    """
    function = harness(target)
    seeds = [p.read_bytes() for p in corpus_files(target)] or [b""]

    @PROPERTY
    @given(
        st.sampled_from(seeds),
        st.integers(0, 10**6),
        st.binary(max_size=64),
        st.binary(max_size=200),
    )
    def run(seed: bytes, at: int, noise: bytes, other: bytes) -> None:
        cut = at % (len(seed) + 1)
        function(seed[:cut] + noise + seed[cut + len(noise) // 2 :])
        function(other)

    run()


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_briefly(target: str) -> None:
    """
    ``fuzz/run.py --runs 2000 <target>`` finds no failing input (the
    corpus in the repository is left as it is).
    """
    result = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "run.py"), "--runs", "2000", target],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
