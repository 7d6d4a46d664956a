"""Reclaim actions a guarded process offers: the plug-in API, with costs.

Three ways in, all landing in one :class:`ReclaimRegistry`:

* ``hivemind.register_reclaim(name, fn, cost=..., keep=False)`` (or the
  :func:`reclaim_action` decorator, or a :class:`ReclaimAction` subclass):
  ``fn()`` frees memory and returns the bytes it freed, or ``None`` to let
  the runtime measure RSS before and after.
* ``hivemind.reclaimable(cache_like)``: a dict or ``cachetools`` cache the app
  owns; the runtime estimates its size by sampling and calls ``clear()``.
* Entry points in the group ``hivemind.reclaim`` (:func:`load_entry_points`),
  so an installed library ships its own actions; each entry point names a
  function or a :class:`ReclaimAction` (class or instance).

``cost`` is the expected cost of rebuilding what the action frees, on the
scale the planner also uses for discovered caches: 0 = free (idle buffers),
1 = a cache the app uses now and then (the default), 10 = something every
request needs. ``keep=True`` lists the action (and its size) but never runs it
automatically. Every call goes through :func:`call_guarded`: an action that
raises is reported, one that hangs is abandoned after a timeout and not
called again until it returns; neither ever raises into the app.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

from hivemind.swarm.record import frozen, record

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])
    C = TypeVar("C")

__all__ = [
    "ENTRY_POINT_GROUP",
    "ReclaimAction",
    "ReclaimFn",
    "ReclaimRegistry",
    "ReclaimSpec",
    "call_guarded",
    "default_registry",
    "installed_entry_points",
    "load_entry_points",
    "reclaim_action",
    "reclaimable",
    "register_reclaim",
]

ENTRY_POINT_GROUP = "hivemind.reclaim"
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@/-")


class ReclaimAction:
    """Extension point: subclass and override :meth:`reclaim` to free your app's memory.

    Class attributes ``cost`` and ``keep`` set the registration's defaults;
    :meth:`estimate` may return the bytes a call would free (``None``: unknown).
    Register an instance with ``hivemind.register_reclaim("drop-images", action)``.
    """

    cost: float = 1.0
    keep: bool = False

    def reclaim(self) -> int | None:
        """Free memory; return the bytes freed, or ``None`` to have RSS measured."""
        return None

    def estimate(self) -> int | None:
        """Bytes a call would free, if the action knows; ``None`` otherwise."""
        return None


ReclaimFn = Callable[[], int | None]


@frozen
class ReclaimSpec:
    """One registered action: what to call, its expected cost, and whether to keep it."""

    name: str
    fn: ReclaimFn
    cost: float = 1.0
    keep: bool = False
    estimate: Callable[[], int | None] | None = None
    source: str = "api"  # "api", "reclaimable" or "entry_point"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or not set(name) <= _NAME_OK or len(name) > 100:
        raise ValueError(f"reclaim action name {name!r}: use letters, digits, _ . : @ / -")
    return name


class ReclaimRegistry:
    """Named reclaim actions, safe to change from any thread.

    A registry made with a ``parent`` also offers the parent's actions (its
    own win on a name clash): a runtime's registry sees the process-wide one.
    """

    def __init__(self, parent: ReclaimRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._specs: dict[str, ReclaimSpec] = {}
        self._parent = parent

    def register(
        self,
        name: str,
        action: ReclaimFn | ReclaimAction,
        *,
        cost: float | None = None,
        keep: bool | None = None,
        estimate: Callable[[], int | None] | None = None,
        source: str = "api",
    ) -> ReclaimSpec:
        """Add (or replace) ``name``; returns the stored spec. Raises on a bad name or cost."""
        _check_name(name)
        if isinstance(action, ReclaimAction):
            fn: Any = action.reclaim
            cost = action.cost if cost is None else cost
            keep = action.keep if keep is None else keep
            estimate = estimate or action.estimate
        else:
            fn = action
        if not callable(fn):
            raise TypeError(f"reclaim action {name!r} is not callable")
        cost = 1.0 if cost is None else float(cost)
        if not 0.0 <= cost <= 1e6:
            raise ValueError(f"reclaim action {name!r}: cost must be >= 0, got {cost}")
        spec = ReclaimSpec(name, fn, cost, bool(keep), estimate, source)
        with self._lock:
            self._specs[name] = spec
        return spec

    def unregister(self, name: str) -> bool:
        with self._lock:
            return self._specs.pop(name, None) is not None

    def specs(self) -> list[ReclaimSpec]:
        """Every action (the parent's too), sorted by name."""
        merged = {s.name: s for s in self._parent.specs()} if self._parent else {}
        with self._lock:
            merged.update(self._specs)
        return [merged[k] for k in sorted(merged)]

    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs())

    def spec(self, name: str) -> ReclaimSpec | None:
        with self._lock:
            found = self._specs.get(name)
        if found is None and self._parent is not None:
            return self._parent.spec(name)
        return found

    def get(self, name: str) -> ReclaimFn | None:
        spec = self.spec(name)
        return spec.fn if spec else None


_DEFAULT = ReclaimRegistry()


def default_registry() -> ReclaimRegistry:
    """The process-wide registry that ``hivemind.register_reclaim`` fills."""
    return _DEFAULT


def register_reclaim(
    name: str,
    fn: ReclaimFn | ReclaimAction,
    *,
    cost: float | None = None,
    keep: bool | None = None,
    estimate: Callable[[], int | None] | None = None,
) -> ReclaimSpec:
    """Offer ``fn`` to the guard as reclaim action ``name`` (see the module docstring)."""
    return _DEFAULT.register(name, fn, cost=cost, keep=keep, estimate=estimate)


def reclaim_action(
    name: str | None = None, *, cost: float = 1.0, keep: bool = False
) -> Callable[[F], F]:
    """Decorator form of :func:`register_reclaim`; the name defaults to the function's."""

    def wrap(fn: F) -> F:
        raw = name or f"{fn.__module__}.{fn.__qualname__}"
        safe = "".join(c if c in _NAME_OK else "_" for c in raw)[:100]
        _DEFAULT.register(safe, fn, cost=cost, keep=keep)
        return fn

    return wrap


def reclaimable(
    cache_like: C, name: str | None = None, *, cost: float = 0.5, keep: bool = False
) -> C:
    """Let the guard clear ``cache_like`` (anything with ``clear()`` and ``len()``).

    Its size is estimated by sampling entries; returns ``cache_like`` so you
    can write ``CACHE = hivemind.reclaimable({})``. The registry keeps a
    reference to it: call ``default_registry().unregister(name)`` to drop it.
    """
    clear = getattr(cache_like, "clear", None)
    if not callable(clear):
        raise TypeError(f"{type(cache_like).__name__} has no clear(): not reclaimable")
    label = name or f"mapping:{type(cache_like).__name__}@{id(cache_like):x}"

    def estimate() -> int:
        from hivemind.swarm.target.discover import estimate_mapping_bytes

        return estimate_mapping_bytes(cache_like)

    def run() -> None:
        clear()

    _DEFAULT.register(label, run, cost=cost, keep=keep, estimate=estimate, source="reclaimable")
    return cache_like


# --- running an action, guarded -------------------------------------------------


@record
class Guarded:
    """What :func:`call_guarded` saw: the value returned, or why there is none."""

    value: Any = None
    error: str = ""
    ms: float = 0.0
    timed_out: bool = False


_hung: dict[str, float] = {}
_hung_lock = threading.Lock()


def call_guarded(name: str, fn: Callable[[], Any], timeout_s: float) -> Guarded:
    """Call ``fn`` in a helper thread; give up waiting after ``timeout_s``.

    Never raises. An action still running from an earlier timed-out call is
    not called again (``error`` says so). A hung thread cannot be killed in
    Python: it is left to finish on its own, as a daemon.
    """
    with _hung_lock:
        since = _hung.get(name)
    if since is not None:
        return Guarded(error=f"still running after a timeout {time.monotonic() - since:.1f}s ago")
    box = Guarded()
    done = threading.Event()

    def target() -> None:
        try:
            box.value = fn()
        except BaseException as exc:  # never let an action's failure escape
            box.error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            done.set()
            with _hung_lock:
                _hung.pop(name, None)

    t0 = time.perf_counter()
    worker = threading.Thread(target=target, name=f"hivemind-reclaim-{name}"[:60], daemon=True)
    worker.start()
    if not done.wait(timeout_s):
        with _hung_lock:
            if not done.is_set():
                _hung[name] = time.monotonic()
        box.timed_out = True
        box.error = f"timed out after {timeout_s:g}s"
    box.ms = (time.perf_counter() - t0) * 1000
    return box


# --- entry points ---------------------------------------------------------------


def load_entry_points(
    registry: ReclaimRegistry | None = None, group: str = ENTRY_POINT_GROUP
) -> tuple[list[str], list[str]]:
    """Register every ``group`` entry point installed; return (loaded names, errors).

    An entry point names a function (registered under the entry point's
    name, with optional ``cost``/``keep`` attributes) or a
    :class:`ReclaimAction` subclass or instance. A broken one is reported in
    the errors, never raised. Installed entry points are read by
    :func:`installed_entry_points`, not ``importlib.metadata`` (which would
    cost the guarded process 4.5 MB of imports).
    """
    reg = registry or _DEFAULT
    loaded: list[str] = []
    errors: list[str] = []
    try:
        eps = installed_entry_points(group)
    except Exception as exc:
        return loaded, [f"entry points unreadable: {exc!r}"]
    for ep_name, ref in eps:
        name = "".join(c if c in _NAME_OK else "_" for c in f"ep:{ep_name}")[:100]
        try:
            obj = _load_ref(ref)
            if isinstance(obj, type) and issubclass(obj, ReclaimAction):
                obj = obj()
            if isinstance(obj, ReclaimAction):
                reg.register(name, obj, source="entry_point")
            else:
                reg.register(
                    name,
                    obj,
                    cost=float(getattr(obj, "cost", 1.0)),
                    keep=bool(getattr(obj, "keep", False)),
                    source="entry_point",
                )
            loaded.append(name)
        except Exception as exc:
            errors.append(f"{ep_name}: {type(exc).__name__}: {exc}"[:200])
    return loaded, errors


def installed_entry_points(group: str = ENTRY_POINT_GROUP) -> list[tuple[str, str]]:
    """``(name, "module:attr")`` of each entry point in ``group``, as installed.

    Reads ``entry_points.txt`` in every ``*.dist-info`` and ``*.egg-info``
    folder on ``sys.path`` (editable installs included); like
    ``importlib.metadata``, the first distribution of a name on the path wins.
    """
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for entry in list(sys.path):
        try:
            listing = os.scandir(entry or ".")
        except OSError:
            continue
        with listing:
            folders = [d for d in listing if d.name.endswith((".dist-info", ".egg-info"))]
        for d in sorted(folders, key=lambda d: d.name):
            dist = d.name.rsplit(".", 1)[0].split("-", 1)[0].lower().replace(".", "_")
            if dist.replace("-", "_") in seen:
                continue
            seen.add(dist.replace("-", "_"))
            try:
                with open(os.path.join(d.path, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            if group in text:
                out.extend(_group_lines(text, group))
    return out


def _group_lines(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of section ``[group]`` of an entry_points.txt."""
    out: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            out.append((name.strip(), value.strip()))
    return out


def _load_ref(ref: str) -> Any:
    """Import ``module:attr.path`` (extras in brackets ignored) and return the object."""
    module, _, attr = ref.split("[", 1)[0].strip().partition(":")
    module = module.strip()
    __import__(module)
    obj: Any = sys.modules[module]
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj
