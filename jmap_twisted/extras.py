"""
Optional features and the packaging extras that install them.

A default server (SQLite in a data directory, one node) needs neither a
PostgreSQL driver nor an AMQP client, so they are extras of the
``jmap-twisted`` distribution.  Code that needs one imports it through
:func:`require` only once the feature is configured; a missing extra then
ends in :class:`MissingExtra`, whose message says what to install, rather
than in a traceback from deep inside an import.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: What each extra enables, as the start of the message naming it.
FEATURES = {
    "postgresql": "PostgreSQL storage",
    "amqp": "The RabbitMQ (AMQP) event bus",
    "oidc": "OpenID Connect bearer tokens",
}


class MissingExtra(ImportError):
    """
    A configured feature needs a packaging extra that is not installed.

    :ivar extra: the extra's name, e.g. ``"postgresql"``.
    """

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{FEATURES[extra]} needs the {extra!r} extra: pip install 'jmap-twisted[{extra}]'",
            name=module,
        )
        self.extra = extra


def require(extra: str, module: str) -> ModuleType:
    """
    Import a module that an extra installs.

    :param extra: the extra that installs it, a key of :data:`FEATURES`.
    :param module: the module's dotted name.
    :return: the module.
    :raises MissingExtra: it cannot be imported.
    """
    if extra not in FEATURES:
        raise ValueError(f"no such extra: {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(extra, module) from error
