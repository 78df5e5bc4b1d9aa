"""
Run the fuzz harnesses of :mod:`fuzz.targets` under atheris (libFuzzer).

    python fuzz/run.py --seconds 3600            # every target, an hour each
    python fuzz/run.py --seconds 60 mime request # some targets
    python fuzz/run.py --runs 2000               # a fixed number of inputs each
    python fuzz/run.py --replay                  # the corpus only, no atheris

Each target runs in a process of its own, seeded from ``fuzz/corpus/<target>/``;
the inputs it finds go to a scratch directory, and with ``--keep`` the ones
that add coverage are merged into the corpus afterwards (commit them).  A
failing input is written to ``fuzz/crashes/<target>-crash-…`` (or
``-timeout-``, ``-oom-``); replay it with ``python fuzz/run.py --replay
--input FILE <target>``.  The exit status is that of the first target that
failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.targets import TARGETS  # noqa: E402

CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"
#: Largest input libFuzzer generates, by target (messages are bigger).
MAX_LEN = {"mime": 65536, "jsonio": 16384}
#: The libFuzzer dictionary of tokens each target's input is made of.
DICTIONARY = {"mime": "mime.dict", "headers": "mime.dict"}


def replay(target: str, inputs: list[Path]) -> int:
    """
    Run files through a harness in this process; the number that failed.
    """
    from fuzz.targets import harness

    function = harness(target)
    failed = 0
    for path in inputs:
        try:
            function(path.read_bytes())
        except Exception:
            failed += 1
            print(f"{target}: {path} fails:", file=sys.stderr)
            traceback.print_exc()
    return failed


def corpus_files(target: str) -> list[Path]:
    directory = CORPUS / target
    return sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []


def fuzz_child(target: str, libfuzzer_args: list[str]) -> None:
    """
    In the child process: instrument the server's code, then fuzz.
    """
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=["jmap_twisted", "fuzz"]):
        from fuzz.targets import harness

        function = harness(target)
    program = os.environ.get("JMAP_FUZZ_PROGRAM", sys.argv[0])
    atheris.Setup([program, *libfuzzer_args], function)
    atheris.Fuzz()


def fuzz(target: str, args: argparse.Namespace) -> int:
    """
    Fuzz one target in a child process; its exit status.
    """
    CRASHES.mkdir(exist_ok=True)
    seeds = CORPUS / target
    seeds.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"jmap-fuzz-{target}-"))
    scratch = work / "corpus"
    scratch.mkdir()
    # libFuzzer runs its own program again for -merge: give it one that
    # starts the child with this interpreter.
    program = work / f"fuzz-{target}"
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{__file__}" --child {target} "$@"\n')
    program.chmod(0o700)
    env = {**os.environ, "JMAP_FUZZ_PROGRAM": str(program)}
    options = [
        f"-max_len={MAX_LEN.get(target, 4096)}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-artifact_prefix={CRASHES / target}-",
        "-print_final_stats=1",
        f"-dict={HERE / 'dictionaries' / DICTIONARY.get(target, 'json.dict')}",
    ]
    if args.runs is not None:
        options.append(f"-runs={args.runs}")
    else:
        options.append(f"-max_total_time={args.seconds}")
    try:
        status = subprocess.call(
            [sys.executable, __file__, "--child", target, *options, str(scratch), str(seeds)],
            cwd=ROOT,
            env=env,
        )
        if status == 0 and args.keep:
            subprocess.call(
                [sys.executable, __file__, "--child", target, "-merge=1", str(seeds), str(scratch)],
                cwd=ROOT,
                env=env,
            )
        return status
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        fuzz_child(sys.argv[2], sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--runs", type=int, help="inputs per target, instead of --seconds")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--keep", action="store_true", help="merge new inputs into the corpus")
    parser.add_argument("--replay", action="store_true", help="run the corpus without atheris")
    parser.add_argument("--input", type=Path, action="append", help="with --replay: these files")
    args = parser.parse_args()
    targets = args.targets or list(TARGETS)
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.replay:
        failed = 0
        for target in targets:
            inputs = args.input or corpus_files(target)
            failed += replay(target, inputs)
            print(f"{target}: {len(inputs)} inputs replayed")
        return 1 if failed else 0
    first_failure = 0
    for target in targets:
        status = fuzz(target, args)
        print(f"{target}: {'ok' if status == 0 else f'FAILED (exit status {status})'}", flush=True)
        first_failure = first_failure or status
    return first_failure


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
