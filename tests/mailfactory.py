"""
Builds test messages: the builder :mod:`jmap_twisted.testing` ships.
"""

from __future__ import annotations

from jmap_twisted.testing import message

__all__ = ["message"]
