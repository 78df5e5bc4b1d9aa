"""
Listeners that record what they receive, for the bus tests: the doubles
:mod:`jmap_twisted.testing` ships, under the names these tests use.
"""

from __future__ import annotations

from jmap_twisted.testing import RecordingListener as Recorder
from jmap_twisted.testing import StalledListener as Stalled

__all__ = ["Recorder", "Stalled"]
