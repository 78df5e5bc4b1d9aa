# -*- test-case-name: tests.methods.test_identity_vacation,tests.methods.test_vacation_reply -*-
"""
The VacationResponse model (RFC 8621 §8), shared by its methods
(:mod:`jmap_twisted.methods.vacation`) and the auto-responder
(:mod:`jmap_twisted.mail.vacation`): one singleton per account, kept as a
document in the mail store, and when it is active.
"""

from __future__ import annotations

from typing import Any

from jmap_twisted.core.request import parse_utc_date
from jmap_twisted.interfaces import IMailReader

#: The document type (and JMAP data type) of the vacation response.
TYPE = "VacationResponse"
#: The id of the only VacationResponse of an account.
SINGLETON = "singleton"
PROPERTIES = ("id", "isEnabled", "fromDate", "toDate", "subject", "textBody", "htmlBody")
#: The vacation response of an account that never set one.
DEFAULT = {
    "isEnabled": False,
    "fromDate": None,
    "toDate": None,
    "subject": None,
    "textBody": None,
    "htmlBody": None,
}


def current(reader: IMailReader) -> dict[str, Any]:
    """
    The account's vacation response (the default when never set).
    """
    return {**DEFAULT, **reader.documents(TYPE).get(SINGLETON, {})}


def is_active(vacation: dict[str, Any], now: float) -> bool:
    """
    Whether an auto-reply should be sent at ``now``: enabled, and ``now``
    within ``[fromDate, toDate)`` where those are set.
    """
    if not vacation.get("isEnabled"):
        return False
    start = parse_utc_date(vacation.get("fromDate"))
    end = parse_utc_date(vacation.get("toDate"))
    return (start is None or start <= now) and (end is None or now < end)
