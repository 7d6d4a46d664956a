"""Issue 14, item 8 and the Low findings: each attack performed, and refused.

8. ``HSET hm:ns:target:x pid abc`` (and friends) under a running swarm's
   status tick and metrics scrape.
Lows: ``?password=`` in a printed URL; a password on the command line
(``--redis-url-file`` instead); the URL in ``AgentConfig``'s repr; deeply
nested hook JSON; control characters and rich markup stored in a session;
``:`` in a session id; 8 MiB hook fields and no ``maxmemory``; an
``ImportError`` inside the app's own ``sitecustomize``; ``--out``/``--export``
through a symlink.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hivemind.coordinator.sessions.recorder import SessionStore
from hivemind.coordinator.sessions.store import valid_session_id
from hivemind.swarm.agent.base import AgentConfig
from hivemind.swarm.errors import HivemindError, StateFolderError
from hivemind.swarm.keys import Keys
from hivemind.swarm.observe.metrics import SwarmCollector
from hivemind.swarm.observe.status import collect_status
from hivemind.swarm.paths import ensure_state_dir
from hivemind.swarm.redis.connection import connect, redact_url
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.settings import load_settings
from hivemind.swarm.state import SupervisorLock, SwarmInfo, write_info
from tests.reliability.attacks import record

HIVEMIND = str(Path(sys.executable).with_name("hivemind"))
HOSTILE = "\x1b]0;owned\x07\x1b[2J[bold red]FAKE[/] [link=file:///etc]x[/link]\u202egnp.exe"


def _env(state: Path, ns: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIVEMIND_", "CLAUDE_"))}
    return {**env, "HIVEMIND_STATE_DIR": str(state), "HIVEMIND_NAMESPACE": ns, **extra}


def _cli(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HIVEMIND, *args],
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def running(
    embedded: EmbeddedRedis, client: redis.Redis, namespace: str
) -> Iterator[tuple[Path, redis.Redis, Keys]]:
    """A swarm record (lock held, ``swarm.json`` ready) on a real embedded Redis, no Ray."""
    state = ensure_state_dir(embedded.state_dir)
    lock = SupervisorLock(state)
    lock.acquire()
    write_info(state, SwarmInfo(pid=os.getpid(), namespace=namespace, redis_url=embedded.url,
                                embedded=True, state="ready"))  # fmt: skip
    try:
        yield state, client, Keys(namespace)
    finally:
        lock.release()


def test_malformed_hashes_do_not_stop_status_or_metrics(
    running: tuple[Path, redis.Redis, Keys],
) -> None:
    state, c, keys = running
    c.hset(keys.target("x"), mapping={"name": "x", "pid": "abc", "rss_bytes": "1e400",
                                      "last_seen": "nan", "target_bytes": "-"})  # fmt: skip
    c.hset(keys.target("y"), mapping={"name": "y", "pid": "99999999999", "rss_bytes": "5"})
    c.hset(keys.agent(f"{keys.ns}.coordinator"), mapping={"pid": "xyz", "last_seen": "soon"})
    c.hset(keys.counters, mapping={"refused": "abc", "acks": "3"})
    c.hset(keys.bus_errors, "samples", "lots")
    reclaim = {"caches": [{"name": HOSTILE, "cost": "abc"}], "reclaimable_bytes": "x"}
    c.hset(keys.target("z"), mapping={"name": HOSTILE, "level": HOSTILE, "pid": "1",
                                      "reclaim": json.dumps(reclaim)})  # fmt: skip
    tried, survived = 4, 0
    st = collect_status(state)
    survived += 1
    assert st.bad_values >= 8, st.bad_values
    assert {t.name: t.pid for t in st.targets} == {"x": None, "y": None, HOSTILE: 1}
    assert st.counters == {"acks": 3}
    from hivemind.swarm.cli.app import _status_line

    line = _status_line(load_settings(state_dir=state, namespace=keys.ns))
    survived += "targets 3" in line
    collector = SwarmCollector(c, keys.ns)
    families = {f.name: f for f in collector.collect()}
    survived += families["hivemind_up"].samples[0].value == 1
    human = _cli("swarm", "status", env=_env(state, keys.ns))
    survived += human.returncode == 0 and "\x1b" not in human.stdout
    record("8 malformed hashes", "HSET target pid abc, rss 1e400, agent pid xyz, counters abc, "
           "hostile target name and reclaim JSON: status tick, swarm status (human), "
           "metrics scrape", tried=tried, refused=survived)  # fmt: skip
    assert survived == tried, (line, human.stdout, human.stderr)
    assert "[bold red]FAKE[/]" in human.stdout
    assert families["hivemind_bad_values"].samples[0].value >= 4
    r = _cli("swarm", "status", "--json", env=_env(state, keys.ns))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["bad_values"] >= 8


def test_printed_urls_and_reprs_hide_the_password() -> None:
    secret = uuid.uuid4().hex
    urls = [
        f"redis://user:{secret}@host:6379/0",
        f"redis://host:6379/0?password={secret}",
        f"rediss://host/0?db=1&Password={secret}&x=1",
        f"unix://u:{secret}@/run/redis.sock",
        f"redis://:{secret}@host:badport/0",
    ]
    shown = [redact_url(u) for u in urls]
    config = AgentConfig(namespace="n", redis_url=urls[0])
    leaks = [s for s in [*shown, repr(config)] if secret in s]
    record("low: password shown", "redact_url (userinfo, ?password=) and AgentConfig repr",
           tried=len(urls) + 1, refused=len(urls) + 1 - len(leaks))  # fmt: skip
    assert leaks == []
    assert redact_url("redis://host:6379/0?db=1") == "redis://host:6379/0?db=1"


def test_the_redis_url_can_come_from_a_private_file(
    password_server: tuple[EmbeddedRedis, str], tmp_path: Path
) -> None:
    server, password = password_server
    url = f"unix://:{password}@{server.socket_path}"
    f = tmp_path / "redis-url"
    f.write_text(url + "\n")
    f.chmod(0o600)
    assert load_settings(redis_url_file=f, state_dir=tmp_path / "s").redis_url == url
    state, ns = tmp_path / "hooks-state", f"t{uuid.uuid4().hex[:8]}"
    env = _env(state, ns, HIVEMIND_REDIS_URL_FILE=str(f))
    r = _cli("hooks", "pre-task", "--description", "via file", "--format", "json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["redis"] == "external", r.stderr
    refused = 0
    f.chmod(0o644)
    try:
        load_settings(redis_url_file=f, state_dir=tmp_path / "s")
    except StateFolderError:
        refused += 1
    link = tmp_path / "link"
    link.symlink_to(f)
    f.chmod(0o600)
    try:
        load_settings(redis_url_file=link, state_dir=tmp_path / "s")
    except StateFolderError:
        refused += 1
    record("low: password in ps", "URL file readable by others / a symlink", tried=2,
           refused=refused)  # fmt: skip
    assert refused == 2


def test_deeply_nested_hook_json_exits_zero_with_a_warning(tmp_path: Path) -> None:
    env = _env(tmp_path / ".hivemind", "tnest")
    r = _cli("hooks", "notify", "--message", "m", env=env, stdin="[" * 200_000)
    record("low: hook JSON", "200,000 nested brackets on a hook's stdin", tried=1,
           refused=int(r.returncode == 0 and "Traceback" not in r.stderr))  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "not valid JSON" in r.stderr


def test_stored_control_characters_and_markup_are_shown_inert(
    embedded: EmbeddedRedis, client: redis.Redis, namespace: str
) -> None:
    state = embedded.state_dir
    env = _env(state, namespace)
    sid = "inj-1"
    store = SessionStore(client, Keys(namespace))
    store.ensure(sid, {"source": HOSTILE})
    rec = _cli("hooks", "pre-task", "--session-id", sid, "--description", HOSTILE, env=env)
    assert rec.returncode == 0, rec.stderr
    restore = _cli("hooks", "session-restore", "--session-id", sid, env=env)
    show = _cli("session", "show", sid, env=env)
    outputs = {"session-restore": restore, "session show": show}
    inert = 0
    for r in outputs.values():
        text = r.stdout
        inert += "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "[bold red]FAKE[/]" in show.stdout, show.stdout  # printed literally, not styled
    record("low: terminal injection", "escape sequences, bidi override and rich markup stored "
           "in a session: session-restore, session show", tried=2, refused=inert)  # fmt: skip
    assert inert == 2, outputs


def test_session_ids_cannot_alias_another_sessions_keys(
    embedded: EmbeddedRedis, client: redis.Redis, namespace: str
) -> None:
    env = _env(embedded.state_dir, namespace)
    aliases = ["victim:events", "victim:learned", "victim:dedup", "a*", "x?"]
    refused = sum(not valid_session_id(a) for a in aliases)
    r = _cli("hooks", "pre-task", "--session-id", "victim:learned", "--description", "d",
             env=env)  # fmt: skip
    assert r.returncode == 0 and "invalid session id" in r.stderr
    assert client.exists(Keys(namespace).session("victim:learned")) == 0
    record("low: session id", "session ids with ':' and globs", tried=len(aliases),
           refused=refused)  # fmt: skip
    assert refused == len(aliases)


def test_huge_hook_fields_are_cut_and_a_full_redis_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / ".hivemind"
    ns = f"t{uuid.uuid4().hex[:8]}"
    env = _env(state, ns, HIVEMIND_REDIS_MAXMEMORY_MB="8")
    big = json.dumps({"session_id": "big-1", "tool_input": {"description": "d" * (4 << 20)}})
    r = _cli("hooks", "pre-task", env=env, stdin=big)
    assert r.returncode == 0 and "cut to 16384" in r.stderr, r.stderr
    monkeypatch.setenv("HIVEMIND_REDIS_MAXMEMORY_MB", "8")
    with EmbeddedRedis(state).lease() as url:
        c = connect(url)
        stored = c.xrange(Keys(ns).session_events("big-1"))
        size = len(stored[0][1][b"data"])
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            for i in range(100_000):  # small values: the server ends up over the cap, not under
                c.set(f"hm:{ns}:fill:{i}", b"x" * 4096)
        full = _cli("hooks", "notify", "--message", "m", "--session-id", "big-1", env=env)
        c.close()
    record("low: hook size", "4 MiB description; filling Redis past maxmemory", tried=2,
           refused=int(size < 20_000) + int("Redis is full" in full.stderr))  # fmt: skip
    assert size < 20_000
    assert full.returncode == 0 and "Redis is full" in full.stderr, full.stderr


def test_an_import_error_inside_the_apps_sitecustomize_is_shown(tmp_path: Path) -> None:
    app_site = tmp_path / "site"
    app_site.mkdir()
    (app_site / "sitecustomize.py").write_text("import no_such_module_hm14\n")
    env = _env(tmp_path / ".hivemind", "tsite", PYTHONPATH=str(app_site))
    r = _cli("run", "--", sys.executable, "-c", "print('app ran')", env=env)
    shown = "sitecustomize failed" in r.stderr and "no_such_module_hm14" in r.stderr
    record("low: hidden sitecustomize error", "ImportError inside the app's sitecustomize",
           tried=1, refused=int(shown))  # fmt: skip
    assert r.returncode == 0 and "app ran" in r.stdout
    assert shown, r.stderr


def test_exports_do_not_follow_symlinks(
    embedded: EmbeddedRedis, client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    store = SessionStore(client, Keys(namespace))
    store.ensure("exp-1", {})
    target = tmp_path / "bashrc"
    target.write_text("keep\n")
    link = tmp_path / "out.json"
    link.symlink_to(target)
    refused = 0
    with pytest.raises(HivemindError, match="symlink"):
        store.export("exp-1", "json", link)
    refused += 1
    env = _env(embedded.state_dir, namespace)
    r = _cli("hooks", "session-end", "--session-id", "exp-1", "--export", str(link), env=env)
    refused += r.returncode == 0 and "symlink" in r.stderr
    cli = _cli("session", "export", "exp-1", "--out", str(link), env=env)
    refused += cli.returncode == 1 and "symlink" in cli.stderr
    record("low: export through symlink", "session export --out / hooks --export to a symlink",
           tried=3, refused=refused)  # fmt: skip
    assert refused == 3, (r.stderr, cli.stderr)
    assert target.read_text() == "keep\n"
