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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import message, running_server  # noqa: E402


def deflated_size(payload: bytes, window_bits: int, mem_level: int) -> int:
    compressor = zlib.compressobj(
        zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits, mem_level
    )
    # As RFC 7692 frames it: sync flush, trailing 4 octets removed.
    return len(compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50)
    args = parser.parse_args()
    with running_server() as server:
        with smtplib.LMTP("127.0.0.1", server.lmtp_port) as client:
            for index in range(args.messages):
                client.sendmail("s@example.com", ["bench@bench.test"], message(index, 3000))
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
    server_default = deflated_size(payload, 11, 4)
    zlib_default = deflated_size(payload, 15, 8)
    print(f"Email/get of {args.messages} messages: {len(payload)} B uncompressed")
    print(
        f"  server default (11-bit window, memLevel 4): {server_default} B = {100 * server_default / len(payload):.1f}%"
    )
    print(
        f"  zlib default (15-bit window, memLevel 8):   {zlib_default} B = {100 * zlib_default / len(payload):.1f}%"
    )


if __name__ == "__main__":
    main()
