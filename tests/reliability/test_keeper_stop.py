"""The keeper's last resort: a supervisor that ignores SIGTERM is SIGKILLed after the grace.

``swarm down`` SIGTERMs the keeper, which passes it on and waits for the
supervisor's orderly stop at most ``STOP_GRACE_S`` (40 s). Here the real
:class:`~hivemind.swarm.lifecycle.keeper.Keeper` runs in a subprocess with
the grace cut to 2 s and, in place of a supervisor, a child that ignores
SIGTERM: the keeper must kill it, say so, and exit 0 (a stop was asked
for). Every process is ended by pid at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hivemind.swarm.procs import pid_alive
from tests.conftest import wait_for

KEEPER = r"""
import subprocess, sys
from pathlib import Path
from hivemind.swarm.lifecycle import keeper

keeper.STOP_GRACE_S = 2
state, pidfile = Path(sys.argv[1]), Path(sys.argv[2])
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(sys.argv[1], 'w').write('ready')\n"
    "time.sleep(600)\n"
)


class Stubborn(keeper.Keeper):
    def _spawn(self, env):
        self.child = subprocess.Popen([sys.executable, "-c", STUBBORN, str(pidfile) + ".up"])
        pidfile.write_text(str(self.child.pid))


sys.exit(Stubborn(state).run())
"""


def test_a_supervisor_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    state, pidfile = tmp_path / "state", tmp_path / "child.pid"
    state.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", KEEPER, str(state), str(pidfile)],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    child = 0
    try:
        assert wait_for(lambda: Path(str(pidfile) + ".up").exists(), 15), "no child started"
        child = int(pidfile.read_text())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        took = time.monotonic() - t0
        err = proc.stderr.read() if proc.stderr else ""
        assert code == 0, err
        assert 1.5 <= took < 10, f"killed after {took:.1f}s, the grace is 2s"
        assert "did not stop within 2s; killing it" in err, err
        assert wait_for(lambda: not pid_alive(child), 5), "the stubborn child is still alive"
    finally:
        for pid in (proc.pid, child):
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=5)
