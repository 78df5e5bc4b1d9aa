"""
The rate of ``jmap-admin mail import``: an mbox and a Maildir of
``--messages`` messages each (10,000 by default; every 50th of the mbox
and every 5th of the Maildir marked deleted, so not imported) imported
into a new SQLite store, then imported again (nothing new: every message
is found already there).

    python bench/import_rate.py --messages 10000

Prints messages per second (read, whether stored or skipped) for each run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet.task import react

from jmap_twisted.admin_import import import_mail
from jmap_twisted.interfaces import IJMAPReactor
from jmap_twisted.store.backends import StoreSettings, open_stores
from tests.test_admin_import import make_maildir, make_mbox


async def _measure(reactor: IJMAPReactor, count: int, progress: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        make_mbox(tmp / "in.mbox", count)
        make_maildir(tmp / "md", count)
        stores = open_stores(StoreSettings(tmp / "data"), reactor)
        await stores.database.start()
        try:
            user = await stores.directory.create_user("bench", None)
            (account,) = await stores.directory.accounts_for_user(user.id)
            for source in ("in.mbox", "md"):
                for run in ("first", "again"):
                    summary = await import_mail(stores, account.id, tmp / source, [], progress)
                    print(
                        f"{source:8} {run:5}: {summary.imported:6d} imported,"
                        f" {summary.present:6d} already there, {summary.deleted:5d} deleted"
                        f" in {summary.seconds:6.2f} s = {summary.rate:8.0f} messages/s"
                    )
        finally:
            await stores.database.stop()


def main() -> None:
    """
    Parse the options and measure.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--progress", action="store_true", help="draw the progress bars")
    options = parser.parse_args()
    react(_measure, (options.messages, options.progress))


if __name__ == "__main__":
    main()
