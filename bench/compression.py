"""
How much permessage-deflate saves on Email/get responses, with the
server's default deflate settings (each message compressed on its own,
11-bit window, memory level 4) and with zlib's defaults for comparison.

    python bench/compression.py --messages 50
"""

from __future__ import annotations

import argparse
import json
import smtplib
import sys
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_target_arguments, message, open_target


def deflated_size(payload: bytes, window_bits: int, mem_level: int) -> int:
    compressor = zlib.compressobj(
        zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits, mem_level
    )
    # As RFC 7692 frames it: sync flush, trailing 4 octets removed.
    return len(compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4


def run(args: argparse.Namespace) -> dict[str, Any]:
    with open_target(args) as server:
        with smtplib.LMTP(server.lmtp_host, server.lmtp_port) as client:
            for index in range(args.messages):
                client.sendmail("s@example.com", [server.recipient], message(index, 3000))
        calls = [
            ["Email/query", {"accountId": server.account, "limit": args.messages}, "q"],
            [
                "Email/get",
                {
                    "accountId": server.account,
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "fetchTextBodyValues": True,
                },
                "g",
            ],
        ]
        responses, _ = server.api(calls)
    payload = json.dumps(
        {"@type": "Response", "methodResponses": responses}, separators=(",", ":")
    ).encode()
    return {
        "messages": args.messages,
        "uncompressed_bytes": len(payload),
        "server_default_bytes": deflated_size(payload, 11, 4),
        "zlib_default_bytes": deflated_size(payload, 15, 8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--json", type=Path)
    add_target_arguments(parser)
    args = parser.parse_args()
    result = run(args)
    size = result["uncompressed_bytes"]
    print(f"Email/get of {args.messages} messages: {size} B uncompressed")
    for key, label in (
        ("server_default_bytes", "server default (11-bit window, memLevel 4)"),
        ("zlib_default_bytes", "zlib default (15-bit window, memLevel 8)"),
    ):
        print(f"  {label}: {result[key]} B = {100 * result[key] / size:.1f}%")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
