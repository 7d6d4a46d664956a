"""Loaded at interpreter start by a process that ``hivemind run`` launched.

It guards the process (``hivemind.attach()``) without any change to the
app's code, once: it removes itself from ``PYTHONPATH`` and clears
``HIVEMIND_ATTACH`` so the app's own subprocesses are not guarded under the
same name. Any other ``sitecustomize`` further down ``sys.path`` still runs.
Nothing here may raise: a failure leaves the app running unguarded.
"""

import os
import sys


def _hivemind_boot() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    rest = [p for p in paths if p and os.path.abspath(p) != here]
    if rest:
        os.environ["PYTHONPATH"] = os.pathsep.join(rest)
    else:
        os.environ.pop("PYTHONPATH", None)
    # Chain to the sitecustomize we shadow, if there is one.
    ours = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        import importlib

        importlib.import_module("sitecustomize")
    except ImportError as exc:
        # Only "there is no other sitecustomize" is expected; an ImportError
        # raised inside the app's own sitecustomize is the app's, and shown.
        if getattr(exc, "name", None) != "sitecustomize":
            print(f"hivemind: the app's sitecustomize failed: {exc!r}", file=sys.stderr)
    except Exception as exc:  # the other sitecustomize failed: not ours to hide
        print(f"hivemind: the app's sitecustomize failed: {exc!r}", file=sys.stderr)
    finally:
        sys.path[:] = saved
        if ours is not None:
            sys.modules["sitecustomize"] = ours
    if os.environ.pop("HIVEMIND_EXPLAIN", "") == "1":  # hivemind run --explain: report only
        os.environ.pop("HIVEMIND_ATTACH", None)
        try:
            from hivemind.swarm.target.explain import install

            install()
        except Exception as exc:
            print(f"hivemind: could not explain this process: {exc!r}", file=sys.stderr)
        return
    if os.environ.pop("HIVEMIND_ATTACH", "") != "1":
        return
    try:
        import hivemind

        hivemind.attach()
    except Exception as exc:
        print(f"hivemind: could not guard this process: {exc!r}", file=sys.stderr)


_hivemind_boot()
