"""The ``hivemind`` console script: dispatches to the hooks CLI or the main CLI.

``hivemind hooks ...`` must stay fast (a coding agent fires it on every
edit), so it never imports typer, rich, pydantic-settings or Ray.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Run the command line and exit with its code."""
    argv = sys.argv[1:]
    if argv[:1] == ["hooks"]:
        from hivemind.hooks.cli import main as hooks_main

        sys.exit(hooks_main(argv[1:]))
    from hivemind.swarm.cli.app import run

    sys.exit(run(argv))
