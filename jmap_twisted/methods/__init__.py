"""
JMAP methods, one module per data type.

- :mod:`~jmap_twisted.methods.core`: the core capability and ``Core/echo``.

:func:`build_registry` assembles every capability and method of the server.
"""

from __future__ import annotations

from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.core.registry import Registry
from jmap_twisted.methods import core


def build_registry(limits: CoreLimits) -> Registry:
    """
    A registry holding every capability and method this server offers.
    """
    registry = Registry()
    core.install(registry, limits)
    return registry
