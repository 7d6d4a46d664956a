"""The process's one guard: :func:`attach` starts it, :func:`current_runtime` finds it,
:func:`detach` stops it; a forked child is guarded under its own name.

:func:`attach` reads every setting it is not given from ``HIVEMIND_*``
variables, then the swarm recorded in the project's state folder, and never
raises into the host (``None`` and a log line if it could not start). The
runtime itself is :class:`~hivemind.swarm.target.runtime.Runtime`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path

from hivemind.swarm.lazylog import get_logger
from hivemind.swarm.record import replace
from hivemind.swarm.target.runtime import NAME_CHARS, Runtime, RuntimeConfig, valid_target_name

__all__ = ["attach", "current_runtime", "detach"]

log = get_logger("hivemind.runtime")

_current: Runtime | None = None
_lock = threading.Lock()
_fork_hook = False


def _after_fork_in_child() -> None:
    """In a forked child: drop the parent's sockets and guard the child under its own name."""
    global _current, _lock
    _lock = threading.Lock()  # another thread may have held it at fork time
    parent = _current
    if parent is None:
        return
    try:
        _current = None
        parent.meter.stop()
        parent.trigger.close()  # its hook would wake the parent's guard through the pipe
        parent.watcher.forget()  # the parent's helper watches the parent, and is its child
        parent._disconnect()  # close our copies of its sockets; the parent's live on
        app_gc = parent.controller.app_settings if parent.controller.engaged else None
        cfg = parent.config
        pid = os.getpid()
        name = _default_name() if cfg.name == _default_name(parent._pid) else f"{cfg.name}-{pid}"
        child = Runtime(replace(cfg, name=name[:128]), app_gc=app_gc)
        _current = child.start()
        atexit.register(child.stop)
    except Exception as exc:  # never raise into the app's fork()
        log.warning("hivemind: could not guard the forked child (%r)", exc)


def _before_fork() -> None:
    """Before ``fork()``: a child never inherits the guard's ``gc.freeze()`` (the parent
    freezes again after its next collection that finds garbage)."""
    runtime = _current
    if runtime is not None:
        runtime.freezer.thaw()


def _default_name(pid: int | None = None) -> str:
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "python"
    clean = "".join(c if c in NAME_CHARS else "-" for c in script)[:60] or "python"
    return f"{clean}-{pid or os.getpid()}"


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def attach(
    target_mb: float | None = None,
    name: str | None = None,
    *,
    redis_url: str | None = None,
    namespace: str | None = None,
    state_dir: Path | str | None = None,
    sample_hz: float | None = None,
    local_gc: bool = True,
) -> Runtime | None:
    """Guard this process: start the runtime thread and return it (once per process).

    Every argument falls back to its ``HIVEMIND_*`` variable, then to the
    swarm recorded in the project's state folder. Returns ``None`` only if
    the runtime could not be built at all (logged; the host never sees an
    exception). Costs one daemon thread and a few MB of RSS (under 5 MB:
    ``benchmarks/bench_loop.py --only overhead`` measures it).
    """
    global _current, _fork_hook
    with _lock:
        if _current is not None:
            return _current
        try:
            from hivemind.swarm.paths import default_state_dir
            from hivemind.swarm.secret import read_secret

            folder = Path(state_dir) if state_dir else default_state_dir()
            # Read once, then out of the app's environment: its children inherit it.
            env_secret = os.environ.pop("HIVEMIND_SECRET", None)
            try:
                key: bytes | None = read_secret(folder, env_secret)
            except Exception as exc:
                log.warning("hivemind: no command key (%s); commands will be refused", exc)
                key = None
            target = target_mb or _env_float("HIVEMIND_TARGET_MB", 1536.0)
            chosen = name or os.environ.get("HIVEMIND_TARGET_NAME") or ""
            if chosen and not valid_target_name(chosen):
                log.warning(
                    "hivemind: target name %r is not valid (1-128 of letters, digits, "
                    "_ . : @ / -); using a default name",
                    chosen,
                )
                chosen = ""
            config = RuntimeConfig(
                name=chosen or _default_name(),
                target_mb=float(target),
                redis_url=redis_url or os.environ.get("HIVEMIND_REDIS_URL") or None,
                namespace=namespace or os.environ.get("HIVEMIND_NAMESPACE") or None,
                state_dir=folder,
                key=key,
                sample_hz=sample_hz or _env_float("HIVEMIND_SAMPLE_HZ", 20.0),
                local_gc=local_gc,
            )
            _current = Runtime(config).start()
            atexit.register(_current.stop)
            if not _fork_hook and hasattr(os, "register_at_fork"):
                os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
                _fork_hook = True
        except Exception as exc:
            log.warning("hivemind: could not attach (%r); the app runs unguarded", exc)
            return None
        return _current


def current_runtime() -> Runtime | None:
    """The runtime :func:`attach` started, if any."""
    return _current


def detach() -> None:
    """Stop the runtime :func:`attach` started (also runs at interpreter exit)."""
    global _current
    with _lock:
        if _current is not None:
            _current.stop()
            atexit.unregister(_current.stop)
            _current = None
