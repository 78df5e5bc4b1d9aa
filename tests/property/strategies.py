"""
Hypothesis strategies shared by the property tests: JSON values as a
client could send them, and values shaped like the JMAP objects the
parsers expect, with hostile variations.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Examples per property test; ``JMAP_PROPERTY_EXAMPLES`` raises it for a
#: longer search than the test suite's.
EXAMPLES = int(os.environ.get("JMAP_PROPERTY_EXAMPLES", "100"))
#: Settings of every property test: no deadline (tests do not bound wall
#: time), and generation is allowed to be slow on a busy machine.
PROPERTY = settings(
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
#: For the tests whose every example parses a whole message.
MESSAGES = settings(PROPERTY, max_examples=max(1, EXAMPLES // 2))

#: Strings with the characters parsers trip on: JSON Pointer escapes,
#: slashes, surrogates' neighbours, controls, non-BMP characters.
TEXT = st.lists(
    st.one_of(
        st.sampled_from(["~", "~0", "~1", "/", "*", "#", "0", "-", "\x00", "\u2028", "é", "😀"]),
        st.characters(codec="utf-8"),
    ),
    max_size=8,
).map("".join)
#: Property and member names: any non-empty string.
NAME = TEXT.filter(bool)
ID = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """
    Any JSON value (as :func:`json.loads` would return it).
    """
    return st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


JSON = json_values()
JSON_OBJECTS = st.dictionaries(TEXT, JSON, max_size=4)
#: Small objects, for where many are drawn at once.
SMALL_OBJECTS = st.dictionaries(TEXT, SCALARS, max_size=3)
