"""
The log formats of ``twistd jmap --log-format``: ``text`` is twistd's
own; ``json`` writes each log event as one JSON object per line
(:func:`twisted.logger.jsonFileLogObserver`), for log collectors.

Events carry their structured fields (``user_id``, ``transport``,
``duration``, …) as JSON members; the access log's line is already
redacted (:func:`jmap_twisted.http.site.redacting_log_formatter`) before
it is logged.
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import ILogObserver, jsonFileLogObserver
from twisted.python.logfile import LogFile

FORMATS = ("text", "json")


def json_log_observer(out: IO[str]) -> ILogObserver:
    """
    An observer writing each event to ``out`` as one line of JSON (no
    RFC 7464 record separator, so every line is a JSON document).
    """
    return jsonFileLogObserver(out, recordSeparator="")


#: Where :func:`twistd_json_observer` writes: twistd's ``--logfile`` and
#: ``--nodaemon``, set by :func:`twistd_json_logger`.
_twistd_destination: tuple[str | None, bool] = (None, False)


def twistd_json_logger(logfile: str | None, nodaemon: bool) -> str:
    """
    Have :func:`twistd_json_observer` write where twistd would write text,
    and return its name for twistd's ``logger`` option (which twistd
    imports by name after the plugin's options are parsed).
    """
    global _twistd_destination
    _twistd_destination = (logfile, nodaemon)
    return f"{__name__}.{twistd_json_observer.__name__}"


def twistd_json_observer() -> ILogObserver:
    """
    The JSON lines observer of ``twistd jmap --log-format json``: on
    standard output with ``--nodaemon`` and no ``--logfile`` (or
    ``--logfile -``), otherwise in the log file (``twistd.log`` by
    default), rotated by size as twistd rotates it.
    """
    logfile, nodaemon = _twistd_destination
    out: IO[str]
    if logfile == "-":
        if not nodaemon:
            sys.exit("Daemons cannot log to stdout, exiting!")
        out = sys.stdout
    elif nodaemon and not logfile:
        out = sys.stdout
    else:
        out = LogFile.fromFullPath(logfile or "twistd.log")
    return json_log_observer(out)
