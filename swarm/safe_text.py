"""Text from Redis, made safe to print: no control characters, no rich markup.

Redis holds data written by hooks, guarded processes and agents. Printed
raw, a stored value could move the cursor, retitle or clear the terminal,
or (through rich) fake styled output. :func:`printable` shows control
characters as ``\\xNN``/``\\uNNNN``; :func:`inert` also escapes rich markup.
Light: ``rich`` is imported only by :func:`inert`.
"""

from __future__ import annotations

import re

__all__ = ["inert", "printable"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """``text`` with control characters (escape sequences, bidi overrides,
    newlines) shown as ``\\xNN``/``\\uNNNN`` instead of acting."""
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], str(text))


def inert(text: object) -> str:
    """:func:`printable`, with rich markup escaped: safe inside ``Console.print``."""
    from rich.markup import escape

    return escape(printable(text))
