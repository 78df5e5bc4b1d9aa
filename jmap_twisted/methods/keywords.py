"""
Email keywords (RFC 8621 §4.1.1).
"""

from __future__ import annotations

import re
from typing import Any

_KEYWORD = re.compile(r"[\x21-\x7e]{1,255}\Z")
_FORBIDDEN = set('(){]%*"\\')

#: The most keywords one email may carry.
MAX_KEYWORDS = 100


def is_keyword(value: Any) -> bool:
    """
    Whether ``value`` is a valid keyword: 1–255 printable ASCII characters
    other than ``( ) { ] % * " \\``.
    """
    return (
        isinstance(value, str)
        and _KEYWORD.match(value) is not None
        and not (_FORBIDDEN & set(value))
    )
