"""Refresh + revoke while 4 senders in threads (4 replicas, each with its own cache, ttl 1 s) share one store
and send continuously: 0 failed sends, every message delivered exactly once, over real loopback HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sender import Sender, SendResult
from sender.sandbox import Sandbox
from tests.lifecycle.conftest import TO, Env, cli, make_env
from tests.servers import wait_until
from tokenstore import fingerprint_of

THREADS = 4
MAX_PER_THREAD = 2000  # a bound, never reached in practice


@dataclass
class Replica:
    """One sending thread with its own Sender (its own cache of the store), like one service replica."""

    index: int
    config: Path
    results: list[SendResult] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        with Sender.from_config(self.config) as client:
            for n in range(MAX_PER_THREAD):
                if stop.is_set():
                    return
                text = f"replica {self.index} message {n}"
                self.texts.append(text)
                try:
                    self.results.append(client.send_text(TO, text))
                except BaseException as exc:  # every failure counts
                    self.failures.append(exc)


@pytest.fixture
def fleet(sandbox: Sandbox, tmp_path: Path) -> Iterator[tuple[Env, list[Replica], threading.Event]]:
    env = make_env(sandbox, tmp_path, ttl=1)
    stop = threading.Event()
    replicas = [Replica(i, env.config) for i in range(THREADS)]
    threads = [threading.Thread(target=r.run, args=(stop,), name=f"replica-{r.index}") for r in replicas]
    for thread in threads:
        thread.start()
    try:
        yield env, replicas, stop
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("wait", ["default", "0"], ids=["revoke-after-ttl+refresh_ahead", "revoke-at-once"])
def test_refresh_and_revoke_under_load(
    fleet: tuple[Env, list[Replica], threading.Event], capsys: pytest.CaptureFixture[str], wait: str
) -> None:
    env, replicas, stop = fleet
    old_fp = fingerprint_of(env.initial)
    wait_until(lambda: all(len(r.results) >= 5 for r in replicas), timeout=20, what="every replica sending")
    argv = ["refresh", "-c", str(env.config), "--revoke-old-after"] + ([] if wait == "default" else [wait])
    code, out, err = cli(argv, capsys, env)  # the real wait: 1.1 s (ttl 1 + refresh_ahead 0.1)
    assert code == 0, err
    new_fp = env.fingerprint()
    assert new_fp != old_fp and env.sandbox.token_record(env.initial).status(env.sandbox.clock()) == "revoked"  # type: ignore[union-attr]
    if wait == "default":
        assert "1.1 s before revoking" in out and "ttl 1 s + refresh_ahead 0.1 s" in out
    marks = [len(r.results) for r in replicas]
    wait_until(
        lambda: all(len(r.results) >= m + 5 for r, m in zip(replicas, marks, strict=True)),
        timeout=20,
        what="sends after the revoke",
    )
    stop.set()
    wait_until(lambda: all(len(r.results) + len(r.failures) == len(r.texts) for r in replicas), timeout=20)

    failures = [f for r in replicas for f in r.failures]
    assert failures == [], f"{len(failures)} failed sends, e.g. {failures[0]!r}"
    sent = [t for r in replicas for t in r.texts]
    counts = env.sandbox.received_counts()
    assert set(counts) == set(sent) and all(n == 1 for n in counts.values()), "a message lost or sent twice"
    results = [res for r in replicas for res in r.results]
    assert len(env.sandbox.received) == len(sent) == len(results) == len({res.message_id for res in results})
    used = {res.token_fingerprint for res in results}
    assert used == {old_fp, new_fp}
    for replica, mark in zip(replicas, marks, strict=True):  # after the revoke, only the new token is accepted
        # each replica sends one message at a time: the one in flight when the refresh returned may have been
        # accepted with the old token just before the revoke; every later one must carry the new token
        assert {res.token_fingerprint for res in replica.results[mark + 1 :]} == {new_fp}
    rejected = [r for r in env.sandbox.requests if r.route == "messages" and r.status == 401]
    assert all(r.token_fingerprint == old_fp for r in rejected)  # each was resent once with the new token
    print(f"\n{wait}: {len(sent)} messages from {THREADS} replicas, {len(rejected)} answered 190 and resent")
