"""
``twistd jmap`` options.
"""

from pathlib import Path

import pytest
from twisted.python import usage

from jmap_twisted.config import DEFAULT_LISTEN
from jmap_twisted.tap import Options


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_defaults() -> None:
    """
    With no options: loopback port 8080, ./jmap-data, URLs from requests.
    """
    config = parse().config
    assert config.listen == (DEFAULT_LISTEN,)
    assert config.listen == ("tcp:8080:interface=127.0.0.1",)
    assert config.data_dir == Path("jmap-data")
    assert config.public_url is None


def test_options_reach_the_config() -> None:
    """
    Every option lands in the frozen config; --listen repeats.
    """
    config = parse(
        "--listen",
        "tcp:9000",
        "--listen",
        r"tcp6:9001:interface=\:\:1",
        "--data",
        "/srv/jmap",
        "--public-url",
        "https://mail.example.com/",
        "--max-size-upload",
        "1000",
        "--max-calls-in-request",
        "4",
    ).config
    assert config.listen == ("tcp:9000", r"tcp6:9001:interface=\:\:1")
    assert config.data_dir == Path("/srv/jmap")
    assert config.public_url == "https://mail.example.com"
    assert config.limits.max_size_upload == 1000
    assert config.limits.max_calls_in_request == 4


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "bogus:1234"],
        ["--listen", "tcp:notaport"],
        ["--public-url", "ftp://x"],
        ["--public-url", "https://x/path"],
        ["--public-url", "nohost"],
        ["--max-size-upload", "0"],
        ["--max-size-request", "ten"],
        ["--no-such-option"],
        ["extra-argument"],
    ],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    """
    Unknown, malformed or contradictory options raise UsageError (which
    twistd prints with the usage), never another exception.
    """
    with pytest.raises(usage.UsageError):
        parse(*args)
