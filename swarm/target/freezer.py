"""The guard's own ``gc.freeze()``: its next collections walk only what is new.

A full collection walks every object the collector tracks. On an app that
makes cyclic garbage over a big long-lived heap (a TUI's widget trees beside
its loaded data), the guard's collections spend most of their time walking
that heap to find it live again. After a collection that found garbage the
runtime *freezes* what survived it (``gc.freeze()``: the objects move to the
collector's permanent generation, which collections skip), so the next ones
walk only what was made since; every few collections (``Plan.thaw``), and
before any verdict that a collection was futile, everything is walked again.

What the app sees stays what it would see without us:

- an app that froze its own heap (pre-fork servers do, before forking) is
  never frozen by us, nor unfrozen: :meth:`Freezer.freeze` refuses for good
  once it finds objects frozen that we did not freeze;
- any full collection the app runs itself (its own ``gc.collect()``, or the
  collector's automatic oldest-generation one) unfreezes first
  (:meth:`Freezer.on_app_full_collection`, from the cost meter's
  ``gc.callbacks`` hook), so it finds every garbage cycle and runs every
  finalizer it would have;
- a forked child never inherits our freeze (``attach`` thaws before ``fork``),
  and :meth:`Freezer.thaw` runs when the guard stops or pressure ends.

Not detected: an app that calls ``gc.freeze()`` itself *while* we hold a
freeze (its objects join ours, and our next thaw unfreezes them too; telling
them apart would mean counting the frozen objects, a walk of the whole heap
that costs about a sixth of a collection). Set ``HIVEMIND_FREEZE=0`` to turn
freezing off.
"""

from __future__ import annotations

import gc

__all__ = ["Freezer"]


class Freezer:
    """Whether the guard holds a ``gc.freeze()``, and the rules for taking and giving it back.

    All methods are safe from any thread holding the GIL and never raise.
    """

    def __init__(self, allowed: bool = True) -> None:
        self.allowed = allowed  # False for good once the app froze objects itself
        self.owned = False  # the permanent generation holds what we froze
        self.freezes = 0
        self.thaws = 0

    def freeze(self) -> bool:
        """Freeze every object the collector tracks now; True if done.

        Refused (and refused from then on) if objects are frozen that we did
        not freeze: the app froze its heap itself, and it stays the app's.
        """
        if not self.allowed:
            return False
        try:
            # Empty unless the app froze: counting walks only the app's frozen objects.
            if not self.owned and gc.get_freeze_count():
                self.allowed = False
                return False
            gc.freeze()
        except Exception:
            return False
        self.owned = True
        self.freezes += 1
        return True

    def thaw(self) -> None:
        """Give back what we froze (``gc.unfreeze()``); nothing if we hold no freeze."""
        if not self.owned:
            return
        self.owned = False
        try:
            gc.unfreeze()
        except Exception:
            return
        self.thaws += 1

    def on_app_full_collection(self) -> None:
        """A full collection the app runs itself is about to start: it walks everything."""
        self.thaw()
