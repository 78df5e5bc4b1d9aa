"""
The per-user hourly recipient budget of EmailSubmission, and its options.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python import usage

from jmap_twisted.mail.sendlimits import SLOT, WINDOW, RecipientBudget, SendLimits
from jmap_twisted.tap import Options


def _budget(limit: int) -> tuple[RecipientBudget, Clock]:
    clock = Clock()
    clock.advance(1_800_000_000)
    return RecipientBudget(limit, clock), clock


def test_budget_counts_per_user_and_refuses_without_counting() -> None:
    """
    Recipients fit while the user's total stays within the limit; a charge
    that does not fit is refused whole and counts nothing; users have
    budgets of their own.
    """
    budget, _ = _budget(10)
    assert budget.charge("u1", 6)
    assert not budget.charge("u1", 5)
    assert budget.used("u1") == 6
    assert budget.charge("u1", 4)
    assert not budget.charge("u1", 1)
    assert budget.charge("u2", 10)
    assert budget.used("u1") == budget.used("u2") == 10


def test_budget_window_slides() -> None:
    """
    A recipient counts for an hour (and at most one slot more), then is
    free again; later ones still count.
    """
    budget, clock = _budget(10)
    assert budget.charge("u1", 8)
    clock.advance(WINDOW / 2)
    assert budget.charge("u1", 2)
    clock.advance(WINDOW / 2 - 1)
    assert not budget.charge("u1", 1)
    clock.advance(SLOT + 1)
    assert budget.used("u1") == 2
    assert budget.charge("u1", 8)


def test_budget_memory_is_bounded() -> None:
    """
    However often a user sends, their window holds at most one counter per
    slot; users whose window has emptied are forgotten.
    """
    budget, clock = _budget(1_000_000)
    for _ in range(10_000):
        assert budget.charge("busy", 1)
        clock.advance(1.7)
    assert len(budget._sent["busy"]) <= WINDOW / SLOT + 1
    for n in range(100):
        budget.charge(f"once{n}", 1)
    clock.advance(2 * WINDOW + SLOT)
    budget.charge("busy", 1)
    assert set(budget._sent) == {"busy"}


def test_refusals_logged_once() -> None:
    """
    A user's first refusal is logged; more refusals are not, until a
    charge fits again.
    """
    budget, clock = _budget(1)
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        assert budget.charge("u1", 1)
        for _ in range(50):
            assert not budget.charge("u1", 1)
        clock.advance(WINDOW + SLOT)
        assert budget.charge("u1", 1)
        assert not budget.charge("u1", 1)
    finally:
        globalLogPublisher.removeObserver(events.append)
    refusals = [e for e in events if e.get("log_namespace") == "jmap_twisted.mail.sendlimits"]
    assert len(refusals) == 2
    assert refusals[0]["user_id"] == "u1"


def test_send_limit_options() -> None:
    """
    ``--max-recipients-per-submission`` (100) and ``--max-recipients-per-hour``
    (1000) reach the configuration.
    """
    options = Options()
    options.parseOptions([])
    assert options.config.send_limits == SendLimits(100, 1000)
    options = Options()
    options.parseOptions(
        ["--max-recipients-per-submission", "5", "--max-recipients-per-hour", "20"]
    )
    assert options.config.send_limits == SendLimits(5, 20)


@pytest.mark.parametrize(
    "args",
    [
        ["--max-recipients-per-submission", "0"],
        ["--max-recipients-per-hour", "many"],
        ["--max-recipients-per-submission", "50", "--max-recipients-per-hour", "10"],
    ],
)
def test_bad_send_limit_options(args: list[str]) -> None:
    """
    Limits must be positive whole numbers, a submission's no larger than
    the hour's.
    """
    with pytest.raises(usage.UsageError):
        Options().parseOptions(args)
