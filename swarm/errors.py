"""One exception hierarchy for hivemind, mapped to CLI exit codes.

Every error a user can cause or meet derives from :class:`HivemindError`. The
CLI prints ``str(error)`` as one line on stderr and exits with
``error.exit_code``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "AlreadyRunningError",
    "ConfigError",
    "HivemindError",
    "NotRunningError",
    "RedisUnavailableError",
    "StateFolderError",
    "SwarmStartError",
    "UsageError",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class HivemindError(Exception):
    """Base of every hivemind error; ``exit_code`` is what the CLI returns."""

    exit_code: int = EXIT_FAILURE


class UsageError(HivemindError):
    """The caller asked for something malformed (a bad flag value, a bad URL)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """Settings from flags or ``HIVEMIND_*`` variables do not validate."""


class StateFolderError(HivemindError):
    """The state folder cannot be used (unwritable, world-writable, not ours)."""


class RedisUnavailableError(HivemindError):
    """Redis cannot be reached, refused our credentials, or failed to start."""


class AlreadyRunningError(HivemindError):
    """A swarm is already running on this state folder."""


class NotRunningError(HivemindError):
    """The command needs a running swarm and none is up."""


class SwarmStartError(HivemindError):
    """Ray or an agent actor did not come up."""
