"""
Push in a browser: LMTP delivery → the live-inbox demo page (``--demo``)
showing the mail, in headless Chromium, next to delivery → StateChange on a
plain Python WebSocket client (Autobahn, permessage-deflate) in the same
run, as the baseline.

    python bench/browser_push.py --deliveries 50

Both clients are connected at once and each delivery is awaited by both
before the next.  The page's figure includes what the baseline's does plus
its resync (``Email/changes`` and ``Email/get`` on its socket) and the DOM
update; its time is the page's ``performance.timeOrigin +
performance.now()`` when the mail was rendered, compared with this
process's ``time.time()`` (the same machine's clock).  A target given with
``--session-url`` must run with ``--demo``.
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Target,
    add_target_arguments,
    message,
    open_target,
    react_and_report,
    summary,
)
from push import Factory, open_sockets
from twisted.internet import defer, threads

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

#: Resolves with the page's render time of a subject, once it is shown.
RENDERED = """
const [subject, done] = arguments;
const check = () => subject in window.jmapDemo.rendered
  ? done(window.jmapDemo.rendered[subject]) : setTimeout(check, 2);
check();
"""


def start_chromium(profile: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    return driver


def sign_in(driver: Any, target: Target) -> str:
    """
    Open the demo page, sign in, wait for its socket; its extensions.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    parts = urlsplit(target.session_url)
    driver.get(f"{parts.scheme}://{parts.netloc}/demo/")
    driver.find_element(By.NAME, "username").send_keys(target.user)
    driver.find_element(By.NAME, "password").send_keys(target.password)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    WebDriverWait(driver, 60, poll_frequency=0.05).until(
        lambda d: d.execute_script("return window.jmapDemo.state === 'open'")
    )
    return str(driver.execute_script("return window.jmapDemo.extensions"))


def deliver(target: Target, index: int) -> dict[str, float]:
    """
    One LMTP delivery; when its DATA started and when the 250 came, on
    both clocks (the page's is the wall clock).
    """
    with smtplib.LMTP(target.lmtp_host, target.lmtp_port) as client:
        client.ehlo_or_helo_if_needed()
        client.mail("bench@example.com")
        client.rcpt(target.recipient)
        data = message(index)
        started = {"wall": time.time(), "perf": time.perf_counter()}
        client.data(data)
        return {
            "started_wall": started["wall"],
            "started_perf": started["perf"],
            "replied_wall": time.time(),
            "replied_perf": time.perf_counter(),
        }


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    with open_target(args, ["--demo"]) as target:
        target.api([["Mailbox/get", {"accountId": target.account, "ids": []}, "0"]])
        baseline = Factory(target.ws_url, target.auth, True)
        await open_sockets(reactor, target.ws_address, baseline, 1)
        with tempfile.TemporaryDirectory(prefix="jmap-bench-chromium-") as profile:
            driver = await threads.deferToThread(start_chromium, profile)
            try:
                extensions = await threads.deferToThread(sign_in, driver, target)
                page: dict[str, list[float]] = {"data": [], "250": []}
                python: dict[str, list[float]] = {"data": [], "250": []}
                for index in range(args.deliveries):
                    baseline.arrivals.clear()
                    baseline.expected = 1
                    framed: defer.Deferred[None] = defer.Deferred()
                    baseline.done = framed
                    subject = f"Benchmark message {index}"
                    rendered = threads.deferToThread(driver.execute_async_script, RENDERED, subject)
                    times = await threads.deferToThread(deliver, target, index)
                    await framed
                    shown_ms = await rendered
                    arrival = baseline.arrivals[0]
                    python["data"].append((arrival - times["started_perf"]) * 1000)
                    python["250"].append((arrival - times["replied_perf"]) * 1000)
                    page["data"].append(shown_ms - times["started_wall"] * 1000)
                    page["250"].append(shown_ms - times["replied_wall"] * 1000)
            finally:
                await threads.deferToThread(driver.quit)
        for protocol in baseline.opened:
            protocol.sendClose(1000)
    return {
        "chromium_demo_page": {
            "extensions": extensions,
            "end_of_data_to_render_ms": summary(page["data"]),
            "reply_250_to_render_ms": summary(page["250"]),
        },
        "python_websocket": {
            "end_of_data_to_frame_ms": summary(python["data"]),
            "reply_250_to_frame_ms": summary(python["250"]),
        },
    }


def report(results: dict[str, Any]) -> None:
    page = results["chromium_demo_page"]
    python = results["python_websocket"]
    print(f"{'measurement':<44} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   (n)")
    for label, value in (
        ("Chromium page: end of DATA -> mail shown", page["end_of_data_to_render_ms"]),
        ("Chromium page: 250 reply -> mail shown", page["reply_250_to_render_ms"]),
        ("Python client: end of DATA -> StateChange", python["end_of_data_to_frame_ms"]),
        ("Python client: 250 reply -> StateChange", python["reply_250_to_frame_ms"]),
    ):
        print(
            f"{label:<44} {value['median']:8.2f} {value['p99']:8.2f} {value['max']:8.2f}"
            f"   ({value['n']})"
        )
    print(f"page's WebSocket extensions: {page['extensions']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=50)
    parser.add_argument("--json", type=Path)
    add_target_arguments(parser)
    react_and_report(run, parser.parse_args(), report)


if __name__ == "__main__":
    main()
