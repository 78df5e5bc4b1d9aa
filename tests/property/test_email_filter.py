"""
``Email/query`` filter and sort validation (RFC 8621 §4.4) on generated
filters: refused only with the method errors RFC 8620/8621 name, and what
passes evaluates without raising.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fuzz.targets.email_filter import check_query
from tests.property.strategies import ID, JSON, PROPERTY, TEXT

KEYWORD = st.sampled_from(["$seen", "$flagged", "custom", "$Draft", "bad keyword", "", "a]b"])
UTC_DATES = st.sampled_from(
    [
        "2024-01-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2024-01-01",
        "0001-01-01T00:00:00Z",
    ]
)
CONDITION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "inMailbox": ID | JSON,
    "inMailboxOtherThan": st.lists(ID, max_size=3) | JSON,
    "before": UTC_DATES | JSON,
    "after": UTC_DATES | JSON,
    "minSize": st.integers(-1, 2**54) | JSON,
    "maxSize": st.integers(-1, 2**54) | JSON,
    "hasKeyword": KEYWORD | JSON,
    "notKeyword": KEYWORD,
    "allInThreadHaveKeyword": KEYWORD,
    "someInThreadHaveKeyword": KEYWORD,
    "noneInThreadHaveKeyword": KEYWORD,
    "hasAttachment": st.booleans() | JSON,
    "text": TEXT | JSON,
    "from": TEXT,
    "to": TEXT,
    "cc": TEXT,
    "bcc": TEXT,
    "subject": TEXT,
    "body": TEXT,
    "header": st.lists(TEXT | st.just("X-Tag"), max_size=3) | JSON,
    "unknownCondition": JSON,
}

CONDITIONS = st.fixed_dictionaries(
    {}, optional={name: values for name, values in CONDITION_VALUES.items()}
)


def operators(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {
            "operator": st.sampled_from(["AND", "OR", "NOT"]) | JSON,
            "conditions": st.lists(children, max_size=3) | JSON,
        }
    )


FILTERS = st.recursive(CONDITIONS | JSON, operators, max_leaves=12)
COMPARATORS = st.fixed_dictionaries(
    {
        "property": st.sampled_from(
            [
                "receivedAt",
                "size",
                "from",
                "to",
                "subject",
                "sentAt",
                "hasKeyword",
                "someInThreadHaveKeyword",
                "allInThreadHaveKeyword",
                "id",
            ]
        )
        | JSON
    },
    optional={
        "isAscending": st.booleans() | JSON,
        "collation": st.sampled_from(["i;ascii-casemap", "i;unicode-casemap", "i;octet", "x"]),
        "keyword": KEYWORD | JSON,
    },
)
SORTS = st.none() | st.lists(COMPARATORS, max_size=3) | JSON


@PROPERTY
@given(st.none() | FILTERS, SORTS)
def test_filters_validate_and_evaluate(filter: Any, sort: Any) -> None:
    """
    A filter and sort are refused with ``invalidArguments``,
    ``unsupportedFilter`` or ``unsupportedSort``, or evaluate over stored
    emails without raising, each match listed once.
    """
    check_query(filter, sort)


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"subject": "x"}
    for _ in range(depth):
        node = {"operator": "NOT", "conditions": [node]}
    return node


@PROPERTY
@given(st.integers(0, 40))
def test_nesting_is_bounded(depth: int) -> None:
    """
    Filters nest as deep as the documented bound and no deeper, refused
    with ``invalidArguments`` rather than a RecursionError.
    """
    from jmap_twisted.methods.email_query import MAX_FILTER_DEPTH

    result = check_query(_nested(depth), None)
    assert (result is not None) == (depth <= MAX_FILTER_DEPTH)
