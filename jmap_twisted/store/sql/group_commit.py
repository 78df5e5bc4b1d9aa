"""
Group commit: write transactions that arrive together share one commit.

A database thread that commits one write at a time pays a commit (an
fsync for SQLite, a round trip and a WAL flush for PostgreSQL) per write:
eight LMTP connections delivering at once would wait for eight commits in a
row.  Instead, writes queue on the reactor's side in *lanes* (one for
SQLite's single writer; several for PostgreSQL, see :class:`WriteLanes`),
and:

- a write that finds its lane idle starts at once, alone: a lone write
  never waits for a timer, nor for company;
- writes that arrive while their lane's transaction is in flight wait, and
  once it is over and its results are handed out, everything waiting (up
  to :data:`DEFAULT_GROUP_LIMIT` writes), with the writes those results'
  callbacks submitted, goes to the database thread as one *group*;
- the thread runs the group as one transaction, each write inside its own
  savepoint: a write that raises is rolled back to its savepoint and fails
  alone, the others go on; one commit ends the group.  If the transaction
  as a whole cannot go on (its commit failed, a deadlock, a lost
  connection, a full disk), it is rolled back and each write not yet failed
  runs again alone, in a transaction of its own, as it would have without
  grouping;
- each write's Deferred fires only once the commit holding it returned,
  in the order the writes ran, so that what is published after a commit
  (push) keeps the commit order.

The database subclass runs a group (:meth:`~jmap_twisted.store.sql.threaded.ThreadedDatabase._write_group`)
and reports, with the outcome of each write, how many transactions it
committed, which :attr:`~jmap_twisted.store.sql.threaded.ThreadedDatabase.commits`
adds up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

#: The most writes one group holds, so that a burst cannot build one giant
#: transaction (each write's octets are in the database's WAL until the
#: commit, and every write of the group waits for the slowest).
DEFAULT_GROUP_LIMIT = 32


@attrs.define(eq=False)
class Write:
    """
    One write transaction's work, ``fn(connection, *args)``, waiting for
    its group.

    :ivar key: whose data it writes (an account id), or ``None``: a key's
        writes go to one lane while any of them is queued or in flight, so
        they run in the order submitted.
    :ivar done: fires with ``fn``'s result once committed, or fails with
        its exception.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    key: str | None = None
    done: Deferred[Any] = attrs.field(factory=Deferred)


@attrs.define
class GroupOutcome:
    """
    What a database thread made of a group.

    :ivar results: for each write of the group, in the group's order, its
        result, or a :class:`~twisted.python.failure.Failure`.
    :ivar commits: the transactions committed (one for a group that
        committed together; more when writes ran again alone).
    """

    results: list[Any]
    commits: int


class WriteLanes:
    """
    The writes waiting on the reactor's side, in lanes, each lane running
    one group at a time.

    A write goes to the lane that already holds writes of its key (queued
    or in flight); otherwise to an idle lane if there is one, else to the
    lane with the fewest writes.  So as many keys as there are lanes write
    in parallel, each alone, as they would without grouping, and writes
    group once every lane is busy.

    :param lanes: how many groups may be in flight at once.
    :param run_group: sends a group to a database thread; fires with its
        :class:`GroupOutcome`.
    :param committed: told how many transactions each group committed.
    :param limit: the most writes per group.
    """

    def __init__(
        self,
        lanes: int,
        run_group: Callable[[Sequence[Write]], Deferred[GroupOutcome]],
        committed: Callable[[int], None],
        limit: int = DEFAULT_GROUP_LIMIT,
    ) -> None:
        if lanes < 1 or limit < 1:
            raise ValueError("a database needs at least one lane and one write per group")
        self._run_group = run_group
        self._committed = committed
        self._limit = limit
        self._waiting: list[deque[Write]] = [deque() for _ in range(lanes)]
        self._busy = [0] * lanes  # the writes of the group in flight
        self._keys: dict[str, tuple[int, int]] = {}  # lane, writes not done

    def add(self, write: Write) -> None:
        """
        Queue ``write`` in its lane (see above); start it at once if the
        lane is idle.
        """
        key = write.key
        held = self._keys.get(key) if key is not None else None
        if held is not None:
            lane, count = held
        else:
            lane = min(
                range(len(self._waiting)),
                key=lambda n: self._busy[n] + len(self._waiting[n]),
            )
            count = 0
        if key is not None:
            self._keys[key] = (lane, count + 1)
        self._waiting[lane].append(write)
        if not self._busy[lane]:
            self._start(lane)

    def take_all(self) -> list[list[list[Write]]]:
        """
        Take every write still waiting, lane by lane, cut into groups (for
        running them in the threads when the reactor no longer can).
        """
        taken = []
        for waiting in self._waiting:
            groups = []
            while waiting:
                groups.append(self._take(waiting))
            taken.append(groups)
        return taken

    def _take(self, waiting: deque[Write]) -> list[Write]:
        return [waiting.popleft() for _ in range(min(self._limit, len(waiting)))]

    def _start(self, lane: int) -> None:
        group = self._take(self._waiting[lane])
        self._busy[lane] = len(group)
        self._run_group(group).addBoth(self._finished, lane, group)

    def _finished(self, outcome: GroupOutcome | Failure, lane: int, group: list[Write]) -> None:
        # The lane stays busy while the results are handed out: the writes
        # their callbacks submit (each connection's next delivery) join
        # those that queued during the commit, in one group, rather than
        # making groups of their own.  No write from elsewhere can arrive
        # meanwhile: the reactor is running the callbacks.
        for write in group:
            if write.key is not None:
                held, count = self._keys[write.key]
                if count > 1:
                    self._keys[write.key] = (held, count - 1)
                else:
                    del self._keys[write.key]
        self._hand_out(outcome, group)
        self._busy[lane] = 0
        if self._waiting[lane]:
            self._start(lane)

    def _hand_out(self, outcome: GroupOutcome | Failure, group: list[Write]) -> None:
        if isinstance(outcome, Failure):
            # The thread could not even report (it is a bug): fail them all.
            for write in group:
                write.done.errback(outcome)
            return
        self._committed(outcome.commits)
        for write, result in zip(group, outcome.results, strict=True):
            if isinstance(result, Failure):
                write.done.errback(result)
            else:
                write.done.callback(result)
