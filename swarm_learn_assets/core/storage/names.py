"""Scenario names and session ids: the only user strings that become paths or partition keys."""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
PARTITION_SEPARATOR = "."
# The column naming each row's session (`<scenario>.<session_id>`, its partition key) in every table a
# stage handles many sessions in: how a batch's rows are told apart.
SESSION_KEY = "_session"


class InvalidNameError(ValueError):
    """A scenario or session name that would be unsafe as a path, partition key or SQL literal."""


def validate_name(kind: str, value: object) -> str:
    """Return `value` unchanged if it is a safe name, else raise with a message naming it."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidNameError(
            f"invalid {kind} {value!r}: expected 1-64 characters of letters, digits, '_' or '-', "
            f"starting with a letter or digit"
        )
    return value


def session_partition_key(scenario: str, session_id: str) -> str:
    """`<scenario>.<session_id>`, the key of the `sessions` dynamic partition."""
    return f"{validate_name('scenario', scenario)}{PARTITION_SEPARATOR}{validate_name('session id', session_id)}"


def split_session_key(key: str) -> tuple[str, str]:
    """Inverse of `session_partition_key`; refuses keys that do not have exactly one separator."""
    parts = key.split(PARTITION_SEPARATOR)
    if len(parts) != 2:
        raise InvalidNameError(f"invalid session partition key {key!r}: expected '<scenario>.<session_id>'")
    return validate_name("scenario", parts[0]), validate_name("session id", parts[1])
