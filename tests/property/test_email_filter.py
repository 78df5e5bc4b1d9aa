"""
``Email/query`` filter and sort validation (RFC 8621 §4.4) on generated
filters: refused only with the method errors RFC 8620/8621 name, and what
passes evaluates without raising.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fuzz.targets.email_filter import check_query
from jmap_twisted.errors import InvalidArguments
from jmap_twisted.methods.email_query import SORT_PROPERTIES, normalise_filter
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
#: Each condition's values: mostly well-typed, with the edge cases a
#: validator must think of (null, zero, the largest sizes, empty arrays),
#: and now and then any JSON at all.
CONDITION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "inMailbox": ID,
    "inMailboxOtherThan": st.lists(ID, max_size=3),
    "before": UTC_DATES,
    "after": UTC_DATES,
    "minSize": st.integers(-1, 2**54),
    "maxSize": st.integers(-1, 2**54),
    "hasKeyword": KEYWORD,
    "notKeyword": KEYWORD,
    "allInThreadHaveKeyword": KEYWORD,
    "someInThreadHaveKeyword": KEYWORD,
    "noneInThreadHaveKeyword": KEYWORD,
    "hasAttachment": st.booleans(),
    "text": TEXT,
    "from": TEXT,
    "to": TEXT,
    "cc": TEXT,
    "bcc": TEXT,
    "subject": TEXT,
    "body": TEXT,
    "header": st.lists(TEXT | st.just("X-Tag"), max_size=3),
    "unknownCondition": JSON,
}
EDGES: st.SearchStrategy[Any] = st.sampled_from([None, 0, "", [], {}, False, 2**53, -0.0, 1.5])


def _values(name: str) -> st.SearchStrategy[Any]:
    valid = CONDITION_VALUES[name]
    return st.one_of(valid, st.none(), valid, EDGES, valid, JSON)


#: FilterConditions of one to three conditions (a validator refuses a
#: condition as soon as one of its members is wrong, so few members reach
#: the evaluation more often).
CONDITIONS = st.lists(
    st.sampled_from(sorted(CONDITION_VALUES)), min_size=1, max_size=2, unique=True
).flatmap(lambda names: st.fixed_dictionaries({name: _values(name) for name in names}))


def operators(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {
            "operator": st.sampled_from(["AND", "OR", "NOT"]),
            "conditions": st.lists(children, min_size=1, max_size=3),
        }
    )


def hostile_operators(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {
            "operator": st.sampled_from(["AND", "OR", "NOT", "XOR"]) | JSON,
            "conditions": st.lists(children, max_size=3) | JSON,
        },
        optional={"extra": JSON},
    )


#: Well-formed operators over conditions that are mostly well-typed: what
#: gets past validation to the evaluation.
FILTERS = st.recursive(CONDITIONS, operators, max_leaves=8)
#: Anything filter-shaped.
HOSTILE_FILTERS = st.recursive(CONDITIONS | JSON, hostile_operators, max_leaves=8)
COMPARATORS = st.fixed_dictionaries(
    {
        # Every supported property, and one that is not.
        "property": st.sampled_from([*SORT_PROPERTIES, "id"]) | JSON
    },
    optional={
        "isAscending": st.booleans() | JSON,
        "collation": st.sampled_from(["i;ascii-casemap", "i;unicode-casemap", "i;octet", "x"]),
        "keyword": KEYWORD | JSON,
    },
)
SORTS = st.none() | st.lists(COMPARATORS, max_size=3) | JSON


@PROPERTY
@given(FILTERS | HOSTILE_FILTERS)
@example({"minSize": None})
@example({"operator": "NOT", "conditions": [{"inMailboxOtherThan": []}]})
def test_filters_validate_and_evaluate(filter: Any) -> None:
    """
    A filter is refused with ``invalidArguments`` or ``unsupportedFilter``,
    or evaluates over stored emails without raising, each match listed
    once.
    """
    check_query(filter, None)


@PROPERTY
@given(SORTS)
def test_sorts_validate_and_evaluate(sort: Any) -> None:
    """
    A sort is refused with ``invalidArguments`` or ``unsupportedSort``, or
    orders the stored emails without raising.
    """
    check_query(None, sort)


@PROPERTY
@given(st.none() | FILTERS | HOSTILE_FILTERS, SORTS)
def test_queries_validate_and_evaluate(filter: Any, sort: Any) -> None:
    """
    Filter and sort together: refused with one of those errors, or
    evaluated without raising.
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


@pytest.mark.parametrize("name", ["minSize", "maxSize"])
def test_null_size_is_invalid(name: str) -> None:
    """
    ``minSize``/``maxSize`` are UnsignedInt (RFC 8621 §4.4.1): ``null`` is
    ``invalidArguments``, not a condition the store cannot evaluate.
    """
    with pytest.raises(InvalidArguments):
        normalise_filter({name: None})
