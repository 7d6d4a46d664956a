"""The memo-cache app's own module: a module-level ``lru_cache`` that only grows.

:func:`hivemind.swarm.bench.corpus_apps.memo` loads this file as the
top-level module ``memo_app`` (not under ``hivemind.``), the way an app's
own module is named, so a guard that looks for an app's caches (and skips
hivemind's own) sees it as it would see a user's.
"""

from __future__ import annotations

import functools

__all__ = ["render_row"]


@functools.lru_cache(maxsize=None)  # noqa: UP033 (as the apps we model write it)
def render_row(key: int) -> str:
    """A memoised "render": ~2 KB of text per distinct key, kept forever."""
    return f"<tr id={key}>" + ("<td>cell</td>" * 150) + "</tr>"
