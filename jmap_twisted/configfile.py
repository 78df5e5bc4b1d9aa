"""
The configuration file of ``twistd jmap`` and ``jmap-admin``: a TOML
table whose keys are the long option names of ``twistd jmap``.

Only reading and checking the file's shape lives here; what each value
means is decided by the options themselves (:mod:`jmap_twisted.tap`), so
a value in the file is checked exactly as the same value on the command
line is.
"""

from __future__ import annotations

import tomllib
from typing import Any

#: The keys naming where the data is, which ``jmap-admin`` reads too.
STORE_KEYS = ("data", "store", "store-password-file")


class ConfigFileError(Exception):
    """
    The configuration file cannot be read, is not TOML, or holds a key or
    value that cannot be used; the message names the file (and the key).
    """


def read_table(path: str) -> dict[str, Any]:
    """
    Read the top-level table of a TOML configuration file.

    :raises ConfigFileError: if the file cannot be read or parsed, or
        holds a nested table (options are never tables).
    """
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise ConfigFileError(f"{path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigFileError(f"{path}: not valid TOML: {e}") from None
    for key, value in table.items():
        if isinstance(value, dict):
            raise ConfigFileError(f"{path}: {key}: options are not tables")
    return table


def option_text(path: str, key: str, value: object) -> str:
    """
    The command-line text of a single-valued option's value in the file:
    a string, a whole number or a number (never a boolean, an array or
    a date).

    :raises ConfigFileError: naming the file and the key otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigFileError(
            f"{path}: {key} must be a string or a number, not {_kind(value)} {value!r}"
        )
    return str(value)


def option_texts(path: str, key: str, value: object) -> list[str]:
    """
    The values of a repeatable option (``listen``, ``domain``, …): an
    array of strings, or one string.

    :raises ConfigFileError: naming the file and the key otherwise.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ConfigFileError(f"{path}: {key} must be an array of strings, not {value!r}")


def flag_value(path: str, key: str, value: object) -> bool:
    """
    The value of a flag (``no-lmtp``, ``demo``, …): true or false.

    :raises ConfigFileError: naming the file and the key otherwise.
    """
    if not isinstance(value, bool):
        raise ConfigFileError(f"{path}: {key} is a flag: true or false, not {value!r}")
    return value


def store_location(path: str) -> dict[str, str]:
    """
    The store location (``data``, ``store``, ``store-password-file``) a
    configuration file gives, for tools that open the server's store
    (``jmap-admin``); the file's other keys are not looked at.

    :raises ConfigFileError: if the file cannot be read or one of these
        keys is not a string.
    """
    table = read_table(path)
    location: dict[str, str] = {}
    for key in STORE_KEYS:
        if key in table:
            value = table[key]
            if not isinstance(value, str):
                raise ConfigFileError(f"{path}: {key} must be a string, not {value!r}")
            location[key] = value
    return location


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "an array"
    return "the value"
