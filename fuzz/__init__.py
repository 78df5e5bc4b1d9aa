"""
Coverage-guided fuzzing of the parsers that read client and mail input.

:mod:`fuzz.targets` holds one harness per parser; ``fuzz/run.py`` runs them
under atheris (libFuzzer), with the corpus kept in ``fuzz/corpus/<target>/``.
"""
