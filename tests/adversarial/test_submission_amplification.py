"""
EmailSubmission amplification: one submission listing a local user
thousands of times, or thousands of distinct recipients, then submissions
one after another, must not put more than the limits' worth of copies in
anyone's mailbox, and must not delay another user.
"""

from __future__ import annotations

import time
from typing import Any

from tests.adversarial.harness import CORE, MAIL, Attack, Server, well_behaved

SUBMISSION = "urn:ietf:params:jmap:submission"
USING = [CORE, MAIL, SUBMISSION]
ALICE = "alice@example.com"


def _draft_and_identity(server: Server, sender: str) -> tuple[str, str, str]:
    """
    A draft from ``sender`` to alice, and ``sender``'s identity: the
    account, email and identity ids.
    """
    account = server.account(sender)
    mailboxes, identities = server.api(
        sender,
        ["Mailbox/get", {"accountId": account}, "m"],
        ["Identity/get", {"accountId": account}, "i"],
        using=USING,
    )
    drafts = next(m["id"] for m in mailboxes[1]["list"] if m["role"] == "drafts")
    [created] = server.api(
        sender,
        [
            "Email/set",
            {
                "accountId": account,
                "create": {
                    "d": {
                        "mailboxIds": {drafts: True},
                        "keywords": {"$draft": True},
                        "from": [{"email": f"{sender}@example.com"}],
                        "to": [{"email": ALICE}],
                        "subject": "Hello",
                        "bodyValues": {"1": {"value": "Hello Alice"}},
                        "textBody": [{"partId": "1", "type": "text/plain"}],
                    }
                },
            },
            "d",
        ],
        using=USING,
    )
    return account, created[1]["created"]["d"]["id"], identities[1]["list"][0]["id"]


def _submit(
    server: Server, sender: str, ids: tuple[str, str, str], recipients: list[str]
) -> dict[str, Any]:
    account, email_id, identity_id = ids
    [[name, result, _]] = server.api(
        sender,
        [
            "EmailSubmission/set",
            {
                "accountId": account,
                "create": {
                    "s": {
                        "identityId": identity_id,
                        "emailId": email_id,
                        "envelope": {
                            "mailFrom": {"email": f"{sender}@example.com"},
                            "rcptTo": [{"email": r} for r in recipients],
                        },
                    }
                },
            },
            "s",
        ],
        timeout=300,
        using=USING,
    )
    assert name == "EmailSubmission/set", result
    return dict(result)


def _inbox_size(server: Server) -> int:
    account = server.account("alice")
    [[_, result, _]] = server.api(
        "alice",
        ["Email/query", {"accountId": account, "calculateTotal": True, "limit": 1}, "q"],
    )
    return int(result["total"])


def test_repeated_and_many_recipients_are_bounded(server: Server) -> None:
    """
    One submission naming alice 2,000 times delivers one copy; one naming
    2,000 distinct recipients is ``tooManyRecipients`` with
    ``maxRecipients``; submissions of 100 recipients each (alice among
    them) stop at the hourly budget of 1,000 with ``rateLimit``; alice's
    inbox holds at most ten copies and her requests are answered within
    seconds throughout.
    """
    ids = _draft_and_identity(server, "mallory")
    repeated = _submit(server, "mallory", ids, [ALICE] * 2000)
    assert list(repeated["created"]) == ["s"], repeated
    assert _inbox_size(server) == 1
    # The envelope the server sent is the one it reports.
    assert repeated["created"]["s"]["envelope"]["rcptTo"] == [{"email": ALICE}]

    many = _submit(server, "mallory", ids, [f"u{i}@far.test" for i in range(2000)])
    assert many["notCreated"]["s"]["type"] == "tooManyRecipients", many
    assert many["notCreated"]["s"]["maxRecipients"] == 100

    outcomes: list[str] = []

    def attack(round_number: int) -> None:
        recipients = [ALICE, *(f"u{round_number}-{i}@far.test" for i in range(99))]
        result = _submit(server, "mallory", ids, recipients)
        outcomes.append("created" if result["created"] else result["notCreated"]["s"]["type"])

    with Attack(attack, threads=2) as flood:
        latencies = [well_behaved(server, "alice", timeout=60) for _ in range(5)]
        deadline = time.monotonic() + 120
        while outcomes.count("rateLimit") < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert max(latencies) < 10, latencies
    assert not flood.errors, flood.errors[:3]
    # One recipient already spent by the first submission: nine more fit.
    assert outcomes.count("created") == 9, outcomes
    assert outcomes.count("rateLimit") >= 5, outcomes
    assert _inbox_size(server) <= 10
    assert well_behaved(server, "alice") < 10
    assert "Traceback" not in server.log()
