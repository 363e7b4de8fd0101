"""SIGKILL of a writer over every storage and composition (DESIGN §5, issue 16 §4).

A warm fork server (``_kill_zygote.py``) forks writers that append and flush at random; the test
kills each at a random moment, reopens the buffer (read-only, and read-write in the next round),
checks every committed row is there and no row is torn, and runs ``unibatch verify``. Each storage
alternates a ring of 13 and a growable buffer. ``make test`` runs 20 kills per storage; the
``soak`` variant 200.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.buffers._kill_zygote import CONFIGS, ROUND
from tests.buffers.test_crash_and_processes import check_after_kill, log_events

from unibatch.cli import verify

ZYGOTE = Path(__file__).with_name("_kill_zygote.py")
CAPACITIES = (13, None)


class Zygote:
    """The fork server: ``write`` starts a writer, ``kill`` SIGKILLs and reaps it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ZYGOTE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: killed as a whole, never leaked
        )

    def ask(self, *words: object) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(" ".join(map(str, words)) + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    server = Zygote()
    yield server
    server.close()


def verify_ok(path: Path) -> None:
    arguments = argparse.Namespace(path=path, chunk=64)
    with contextlib.redirect_stdout(None):
        assert verify.run(arguments) == 0, f"unibatch verify {path} reports problems"


def wait_for_writes(log: Path, writes: int, timeout: float = 60) -> None:
    """Until the writer has started and begun ``writes`` writes (kills land at any storage's pace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = log_events(log)
        if events and events[0][0] == "R" and sum(event[0] == "B" for event in events) >= writes:
            return
        err = Path(f"{log}.err")
        if err.exists() and err.read_text():
            pytest.fail(f"the writer failed:\n{err.read_text()}")
        time.sleep(0.002)
    pytest.fail("the writer did not start in time")


def kill_rounds(zygote: Zygote, name: str, tmp_path: Path, kills: int, seed: int) -> int:
    """``kills`` rounds alternating a ring and a growable buffer; returns the kills survived."""
    config = CONFIGS[name]
    rng = random.Random(seed)
    paths = {capacity: tmp_path / f"buffer-{capacity}" for capacity in CAPACITIES}
    previous: dict[int | None, list[int]] = {capacity: [] for capacity in CAPACITIES}
    for capacity, path in paths.items():
        config.create(path, config.space(), capacity).close()
    survived = committed_rounds = 0
    for round_index in range(1, kills + 1):
        capacity = CAPACITIES[round_index % 2]
        path, log = paths[capacity], tmp_path / f"round{round_index}.log"
        base = round_index * ROUND
        pid = int(zygote.ask("write", name, path, log, base, rng.choice((1, 3, 8)), 4, rng.randrange(2**31)))
        try:
            wait_for_writes(log, rng.choice([0, 1]) if rng.random() < 0.15 else rng.randint(2, 12))
            time.sleep(rng.uniform(0, 0.004))
        finally:
            status = int(zygote.ask("kill", pid))
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
            f"the writer exited on its own ({status}):\n{Path(f'{log}.err').read_text()}"
        )
        events = log_events(log)
        with config.load(path, read_only=True) as loaded:
            seqs = config.read_all(loaded)
        check_after_kill(seqs, previous[capacity], events, capacity, base)
        if round_index % 5 == 0:
            verify_ok(path)
        committed_rounds += any(event[0] == "F" for event in events)
        previous[capacity] = seqs
        survived += 1
    assert committed_rounds >= kills // 4, f"only {committed_rounds} rounds committed rows: the test checked little"
    return survived


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sigkill_of_a_writer_leaves_every_committed_row(zygote, tmp_path, name):
    """20 random kills per storage (10 in a ring of 13, 10 growable): reopen, every committed row, none torn."""
    assert kill_rounds(zygote, name, tmp_path, kills=20, seed=sum(map(ord, name))) == 20


@pytest.mark.soak
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sigkill_soak(zygote, tmp_path, name):
    assert kill_rounds(zygote, name, tmp_path, kills=200, seed=7 + sum(map(ord, name))) == 200
