"""Typer option types shared by every command group, so each flag reads the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["JsonOpt", "NamespaceOpt", "StateDirOpt"]

NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Redis key prefix hm:{ns}: [env HIVEMIND_NAMESPACE]"),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="State folder [default: <project root>/.hivemind]"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
