"""
``twistd jmap`` options for OpenID Connect: off by default, checked
together, the client secret read from its file, https required off
loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from jmap_twisted.config import OIDCOptions
from jmap_twisted.extras import MissingExtra
from jmap_twisted.tap import Options
from jmap_twisted.testing import throwaway_certificate


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_off_by_default() -> None:
    assert parse().config.oidc == OIDCOptions()
    assert not parse().config.oidc.enabled


def test_every_option_reaches_the_config(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\nignored\n")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(throwaway_certificate()[1])
    config = parse(
        "--oidc-issuer",
        "https://id.example.com/realms/mail",
        "--oidc-issuer",
        "http://127.0.0.1:9000",
        "--oidc-audience",
        "https://jmap.example.com",
        "--oidc-user-claim",
        "preferred_username",
        "--oidc-create-users",
        "--oidc-client-id",
        "jmap",
        "--oidc-client-secret-file",
        str(secret),
        "--oidc-ca-file",
        str(ca),
    ).config
    assert config.oidc == OIDCOptions(
        issuers=("https://id.example.com/realms/mail", "http://127.0.0.1:9000"),
        audience="https://jmap.example.com",
        user_claim="preferred_username",
        create_users=True,
        client_id="jmap",
        client_secret="s3cret",
        ca_file=str(ca),
    )
    assert config.oidc.introspects


def test_minimal() -> None:
    oidc = parse("--oidc-issuer", "https://id.example.com", "--oidc-audience", "jmap").config.oidc
    assert oidc.issuers == ("https://id.example.com",)
    assert oidc.user_claim == "email"
    assert not oidc.create_users and not oidc.introspects


#: An issuer and its audience, the least that turns OpenID Connect on.
ON = ["--oidc-issuer", "https://id.example.com", "--oidc-audience", "a"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--oidc-issuer", "http://id.example.com"], "must be https"),
        (["--oidc-issuer", "https://id.example.com?x=1", "--oidc-audience", "a"], "query"),
        (["--oidc-issuer", "https://id.example.com"], "needs --oidc-audience"),
        (["--oidc-audience", "a"], "needs --oidc-issuer"),
        (["--oidc-create-users"], "needs --oidc-issuer"),
        (
            [*ON, "--oidc-client-id", "jmap"],
            "go together",
        ),
        (
            [*ON, "--oidc-client-id", "jmap", "--oidc-client-secret-file", "/nonexistent"],
            "--oidc-client-secret-file",
        ),
        (
            [*ON, "--oidc-ca-file", "/nonexistent"],
            "--oidc-ca-file",
        ),
        (
            [*ON, "--oidc-user-claim", ""],
            "may not be empty",
        ),
    ],
)
def test_refused(args: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError, match=message.replace("?", r"\?")):
        parse(*args)


def test_missing_extra_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without the ``oidc`` extra installed, asking for an issuer says which
    extra to install.
    """
    import jmap_twisted.tap

    def missing(extra: str, module: str) -> None:
        raise MissingExtra(extra, module)

    monkeypatch.setattr(jmap_twisted.tap, "require", missing)
    with pytest.raises(usage.UsageError, match=r"jmap-twisted\[oidc\]"):
        parse("--oidc-issuer", "https://id.example.com", "--oidc-audience", "a")
