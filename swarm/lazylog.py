"""A logger that imports :mod:`logging` only when it has something to say.

``import logging`` costs a process ~1 MB RSS (it loads ``traceback``,
``tokenize``, ``string``, ``weakref``...), and the runtime inside a user's
app logs only when something goes wrong. :func:`get_logger` returns a
stand-in with ``debug``, ``info``, ``warning`` and ``error``: a warning or
an error imports :mod:`logging` and goes to ``logging.getLogger(name)``,
with the caller's file and line. ``debug`` and ``info`` are dropped while nothing in the
process has imported :mod:`logging`: nothing can have configured it then,
and an unconfigured logger drops them anyway (the root level is WARNING).
Once the app has imported :mod:`logging`, every call goes through it.
"""

from __future__ import annotations

import sys

__all__ = ["LazyLogger", "get_logger"]


class LazyLogger:
    """Forwards to ``logging.getLogger(name)``, importing :mod:`logging` on the first need."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _emit(self, level: str, msg: str, args: tuple[object, ...], exc_info: bool) -> None:
        if "logging" not in sys.modules and level in ("debug", "info"):
            return
        import logging

        log = getattr(logging.getLogger(self.name), level)
        log(msg, *args, exc_info=exc_info, stacklevel=3)  # the caller's file and line

    def debug(self, msg: str, *args: object, exc_info: bool = False) -> None:
        """``Logger.debug``; dropped while :mod:`logging` is not imported."""
        self._emit("debug", msg, args, exc_info)

    def info(self, msg: str, *args: object, exc_info: bool = False) -> None:
        """``Logger.info``; dropped while :mod:`logging` is not imported."""
        self._emit("info", msg, args, exc_info)

    def warning(self, msg: str, *args: object, exc_info: bool = False) -> None:
        """``Logger.warning`` (imports :mod:`logging`)."""
        self._emit("warning", msg, args, exc_info)

    def error(self, msg: str, *args: object, exc_info: bool = False) -> None:
        """``Logger.error`` (imports :mod:`logging`)."""
        self._emit("error", msg, args, exc_info)


def get_logger(name: str) -> LazyLogger:
    """A :class:`LazyLogger` for ``name`` (what ``logging.getLogger(name)`` would name)."""
    return LazyLogger(name)
