"""
Bytes a client moves to resynchronise after one new mail in a mailbox of N
messages, with ``*/changes`` + ``*/get``, against a full reload of the
same view (query every id, get every email, get the mailboxes).

    python bench/resync.py --messages 10000
"""

from __future__ import annotations

import argparse
import json
import smtplib
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Target, add_target_arguments, message, open_target

PROPERTIES = [
    "threadId",
    "mailboxIds",
    "keywords",
    "receivedAt",
    "subject",
    "from",
    "preview",
    "size",
]


def full_reload(server: Target) -> int:
    total = 0
    _, size = server.api([["Mailbox/get", {"accountId": server.account}, "m"]])
    total += size
    ids: list[str] = []
    position = 0
    while True:
        responses, size = server.api(
            [
                [
                    "Email/query",
                    {"accountId": server.account, "position": position, "limit": 5000},
                    "q",
                ]
            ]
        )
        total += size
        page = responses[0][1]["ids"]
        ids += page
        position += len(page)
        if len(page) < 5000:
            break
    for start in range(0, len(ids), 500):
        _, size = server.api(
            [
                [
                    "Email/get",
                    {
                        "accountId": server.account,
                        "ids": ids[start : start + 500],
                        "properties": PROPERTIES,
                    },
                    "g",
                ]
            ]
        )
        total += size
    return total


def resync(server: Target, email_state: str, mailbox_state: str) -> int:
    account = server.account
    _, size = server.api(
        [
            ["Email/changes", {"accountId": account, "sinceState": email_state}, "c"],
            [
                "Email/get",
                {
                    "accountId": account,
                    "#ids": {"resultOf": "c", "name": "Email/changes", "path": "/created"},
                    "properties": PROPERTIES,
                },
                "g",
            ],
            ["Mailbox/changes", {"accountId": account, "sinceState": mailbox_state}, "mc"],
            [
                "Mailbox/get",
                {
                    "accountId": account,
                    "#ids": {"resultOf": "mc", "name": "Mailbox/changes", "path": "/updated"},
                },
                "mg",
            ],
        ]
    )
    return size


def states(server: Target) -> tuple[str, str]:
    responses, _ = server.api(
        [
            ["Email/get", {"accountId": server.account, "ids": []}, "e"],
            ["Mailbox/get", {"accountId": server.account, "ids": []}, "m"],
        ]
    )
    return responses[0][1]["state"], responses[1][1]["state"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    messages = args.messages
    with open_target(args) as server:
        with smtplib.LMTP(server.lmtp_host, server.lmtp_port) as client:
            for index in range(messages):
                client.sendmail("s@example.com", [server.recipient], message(index, 1500))
            email_state, mailbox_state = states(server)
            client.sendmail("s@example.com", [server.recipient], message(messages, 1500))
        incremental = resync(server, email_state, mailbox_state)
        full = full_reload(server)
    return {
        "messages": messages,
        "full_reload_bytes": full,
        "resync_bytes": incremental,
        "ratio_percent": 100 * incremental / full,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    add_target_arguments(parser)
    args = parser.parse_args()
    result = run(args)
    print(
        f"{result['messages']} messages: full reload {result['full_reload_bytes']} B, "
        f"resync {result['resync_bytes']} B = {result['ratio_percent']:.3f}%"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
