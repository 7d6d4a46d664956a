"""What the security tests tried and what got through, for ``benchmarks/bench_security.py``.

A test that performs an attack calls :func:`record` with what it observed
(how many attempts, how many were refused) *before* it asserts that none got
through, so a regression shows in the table as well as in the test. The
records go, one JSON object a line, to the file named by
``$HM_ATTACK_LOG`` (not a ``HIVEMIND_`` variable: the test conftest clears
those); without it (a normal ``pytest`` run) nothing is
written. ``bench_security`` sets it, runs the security tests with pytest and
tabulates the records with each test's outcome.

Use from any test module (``busauth``'s forged decisions and acks too)::

    from tests.reliability.attacks import record
    record("1 forged decisions", "forged freeze decision published", tried=50, refused=50)
"""

from __future__ import annotations

import json
import os
import time

__all__ = ["LOG_ENV", "record"]

LOG_ENV = "HM_ATTACK_LOG"


def record(finding: str, attack: str, *, tried: int, refused: int, note: str = "") -> None:
    """Append one attack's outcome to ``$HM_ATTACK_LOG`` (no-op when unset).

    ``finding`` names the issue item (``"2 planted state folder"``),
    ``attack`` what was done; ``tried - refused`` is how many got through.
    """
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]  # drop " (call)"
    row = {
        "finding": finding,
        "attack": attack,
        "tried": int(tried),
        "refused": int(refused),
        "note": note,
        "test": test,
        "ts": time.time(),
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
