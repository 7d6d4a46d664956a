"""hivemind: keep Python applications under a memory target with a swarm of Ray agents.

``import hivemind`` is cheap (no Ray, no Redis import); ``hivemind.attach()``
guards the current process. The subpackages are ``hivemind.swarm``
(substrate, CLI, runtime), ``hivemind.agents`` (the optimizer library and
agent actors), ``hivemind.coordinator`` (policy, sessions) and
``hivemind.hooks`` (claude-flow compatible hooks).
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__", "attach"]

__version__ = "0.1.0"


def attach(*args: Any, **kwargs: Any) -> Any:
    """Guard this process; see :func:`hivemind.swarm.target.runtime.attach`."""
    from hivemind.swarm.target.runtime import attach as _attach

    return _attach(*args, **kwargs)
