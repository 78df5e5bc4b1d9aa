"""
Push fan-out against the floor, in alternated rounds of one run: one
account holding N open compressed sockets.

- *Fan-out*: end of an LMTP ``DATA`` → the StateChange frame on the last
  of the N sockets, deliveries one after another.
- *Rate*: deliveries back to back over one LMTP connection to that
  account, until every socket has been pushed the last state: mails/s,
  and the server's CPU per delivery.  The server merges an account's
  StateChanges while its last fan-out is recent (the floor sends one
  frame per delivery to each socket).

The floor (``bench/floor.py``: bare Twisted LMTP and Autobahn, no storage)
is measured the same way in the same run.  The sockets are read by a lean
epoll client (``bench/leanws.py``), so that the client's own cost is small
beside the server's.

    python bench/fanout.py --sockets 1000 --deliveries 20 --rate-deliveries 200
"""

from __future__ import annotations

import argparse
import json
import smtplib
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_seconds, message, running_server, summary
from floor import running_floor
from leanws import LeanClient

#: Seconds between the deliveries of the fan-out figure, so that each one
#: is pushed on its own (the server paces an account's StateChanges after
#: an expensive fan-out; the rate figure shows that).
GAP = 0.1


class Side:
    """
    One server under measurement: its LMTP address, its process and the
    lean client holding its sockets.
    """

    def __init__(
        self,
        name: str,
        pid: int,
        lmtp: tuple[str, int],
        recipient: str,
        state: Callable[[], str] | None = None,
    ) -> None:
        self.name = name
        #: Reads the account's Email state (pushes may merge), or ``None``:
        #: every delivery is a frame on every socket.
        self.state = state
        self.pid = pid
        self.lmtp = lmtp
        self.recipient = recipient
        self.client = LeanClient()

    def fan_out(self, deliveries: int) -> list[float]:
        """
        End of DATA → last frame, in milliseconds, per delivery.
        """
        sockets = len(self.client.sockets)
        latencies = []
        with smtplib.LMTP(*self.lmtp) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            for index in range(deliveries):
                expected = self.client.received + sockets
                lmtp.mail("bench@example.com")
                lmtp.rcpt(self.recipient)
                started = time.perf_counter()
                lmtp.data(message(index))
                last = self.client.wait_frames(expected)
                latencies.append((last - started) * 1000)
                time.sleep(GAP)  # one delivery's fan-out at a time
        return latencies

    def rate(self, deliveries: int) -> tuple[float, float]:
        """
        Deliveries back to back (LMTP in a thread, frames read here):
        mails/s until the last frame, and server CPU ms per delivery.
        """
        expected = self.client.received + deliveries * len(self.client.sockets)
        failure: list[BaseException] = []

        def deliver() -> None:
            try:
                with smtplib.LMTP(*self.lmtp) as lmtp:
                    for index in range(deliveries):
                        lmtp.sendmail("bench@example.com", [self.recipient], message(index))
            except BaseException as e:  # reported below
                failure.append(e)

        cpu = cpu_seconds(self.pid)
        started = time.perf_counter()
        sender = threading.Thread(target=deliver)
        sender.start()
        if self.state is None:
            last = self.client.wait_frames(
                expected, timeout=120, failed=lambda: failure[0] if failure else None
            )
            sender.join()
        else:
            sender.join()
            last = self.client.wait_content(f'"Email":"{self.state()}"'.encode(), timeout=600)
        if failure:
            raise failure[0]
        used = cpu_seconds(self.pid) - cpu
        return deliveries / (last - started), used / deliveries * 1000


def run(args: argparse.Namespace) -> dict[str, Any]:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: dict[str, Any] = {"sockets": args.sockets}
    # No pings: each side's sockets wait unread while the other side is measured.
    with running_server(["--ws-ping-interval", "0"]) as server, running_floor() as floor:
        server.api([["Mailbox/get", {"accountId": server.account, "ids": []}, "0"]])

        def email_state() -> str:
            responses, _ = server.api(
                [["Email/get", {"accountId": server.account, "ids": []}, "0"]]
            )
            return str(responses[0][1]["state"])

        ours = Side(
            "server",
            server.pid or 0,
            (server.lmtp_host, server.lmtp_port),
            server.recipient,
            email_state,
        )
        bare = Side("floor", floor.pid, floor.lmtp, "bench@bench.test")
        host, port = server.ws_address
        path = urlsplit(server.ws_url).path
        for _ in range(args.sockets):
            ours.client.open(host, port, path, [("Authorization", server.auth)])
            bare.client.open(*floor.ws_address, "/bench", message=None)
        ours.client.settle(0.5)
        bare.client.settle(0.5)
        fan: dict[str, list[float]] = {"server": [], "floor": []}
        rates: dict[str, list[float]] = {"server": [], "floor": []}
        cpu: dict[str, list[float]] = {"server": [], "floor": []}
        for _ in range(args.rounds):
            for side in (ours, bare):
                fan[side.name] += side.fan_out(args.deliveries)
            for side in (ours, bare):
                rate, per_delivery = side.rate(args.rate_deliveries)
                rates[side.name].append(rate)
                cpu[side.name].append(per_delivery)
        for side in (ours, bare):
            results[side.name] = {
                "end_of_data_to_last_frame_ms": summary(fan[side.name]),
                "deliveries_per_s": statistics.median(rates[side.name]),
                "rates": rates[side.name],
                "cpu_ms_per_delivery": statistics.median(cpu[side.name]),
            }
            side.client.close()
    results["ratio_p50"] = (
        results["server"]["end_of_data_to_last_frame_ms"]["median"]
        / results["floor"]["end_of_data_to_last_frame_ms"]["median"]
    )
    return results


def report(results: dict[str, Any]) -> None:
    n = results["sockets"]
    for name in ("server", "floor"):
        value = results[name]
        fan = value["end_of_data_to_last_frame_ms"]
        print(
            f"{name}: fan-out to {n} sockets p50 {fan['median']:.1f} ms, p99 {fan['p99']:.1f} ms;"
            f" {value['deliveries_per_s']:.0f} deliveries/s,"
            f" {value['cpu_ms_per_delivery']:.1f} ms server CPU per delivery"
        )
    print(f"fan-out p50 ratio server/floor: {results['ratio_p50']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--deliveries", type=int, default=20, help="fan-out deliveries per round")
    parser.add_argument("--rate-deliveries", type=int, default=200, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = run(args)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
