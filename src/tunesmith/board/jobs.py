"""The board's job queue: ``tunesmith train`` / ``eval`` / ``export`` as subprocesses, one at a
time.

A job is the CLI verb itself (``python -m tunesmith train CONFIG --no-progress``), so the board
trains, evaluates and exports exactly as the terminal does. Each job's output goes to a log file
in its run directory and its state to ``board.json`` beside it: a reloaded page (or a new
board on the same runs) reads the state back from the run directory, not from the browser.

Stop sends SIGINT, which the training loop turns into "save a checkpoint after this step, then
exit" (``train/loop.py``); resume is ``tunesmith train CONFIG --resume``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "board.json"
"""The job state the board keeps in a run directory (kind, command, state, pid, exit code)."""
CONFIG_FILE = "board-config.yaml"
"""The config the board launched ``train`` with (the run's own ``config.yaml`` is the resolved
one ``train`` writes)."""

ACTIVE = ("queued", "running", "stopping")


@dataclass
class Job:
    """One CLI command the board runs for a run directory."""

    kind: str
    argv: list[str]
    run_dir: Path
    log: Path
    state: str = "queued"
    pid: int | None = None
    returncode: int | None = None
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """What ``board.json`` holds."""
        return {
            "kind": self.kind,
            "argv": self.argv,
            "log": self.log.name,
            "state": self.state,
            "pid": self.pid,
            "returncode": self.returncode,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(run_dir: str | Path) -> dict[str, Any] | None:
    """``board.json`` of a run directory; a ``running`` job whose process is gone reads as
    ``lost`` (the board that started it was stopped)."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if state.get("state") in ("running", "stopping") and not _alive(state.get("pid")):
        state["state"] = "lost"
    return state


class JobQueue:
    """Runs queued jobs one after another in a background thread.

    Args:
        workdir: The folder jobs run in (relative paths in configs resolve from here).
        env: Extra environment variables for the jobs.
    """

    def __init__(self, workdir: str | Path, env: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.jobs: list[Job] = []
        self._pending: deque[Job] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="board-jobs", daemon=True)
        self._thread.start()

    # -- public ------------------------------------------------------------------------------
    def submit(self, kind: str, args: list[str], run_dir: str | Path, log_name: str) -> Job:
        """Queue ``tunesmith ARGS`` for ``run_dir``; its output goes to ``run_dir/log_name``."""
        run = self.resolve(run_dir)
        run.mkdir(parents=True, exist_ok=True)
        job = Job(kind=kind, argv=list(args), run_dir=run, log=run / log_name)
        with self._lock:
            self.jobs.append(job)
            self._pending.append(job)
            self._write(job)
        self._wake.set()
        return job

    def resolve(self, path: str | Path) -> Path:
        """A path as the jobs see it (relative to the work folder)."""
        p = Path(path).expanduser()
        return (p if p.is_absolute() else self.workdir / p).resolve()

    def running(self) -> Job | None:
        """The job now running, if any."""
        with self._lock:
            return next((j for j in self.jobs if j.state in ("running", "stopping")), None)

    def queued(self) -> list[Job]:
        """Jobs waiting their turn, in order."""
        with self._lock:
            return list(self._pending)

    def latest(self, run_dir: str | Path) -> Job | None:
        """The newest job of a run directory started by this board."""
        run = self.resolve(run_dir)
        with self._lock:
            return next((j for j in reversed(self.jobs) if j.run_dir == run), None)

    def busy(self, run_dir: str | Path) -> bool:
        """Whether a job of ``run_dir`` is queued or running."""
        job = self.latest(run_dir)
        return job is not None and job.state in ACTIVE

    def stop(self, run_dir: str | Path) -> str:
        """Stop the run's job: SIGINT when running (the loop checkpoints, then exits), or take it
        out of the queue. Returns what was done, for the page."""
        run = self.resolve(run_dir)
        with self._lock:
            for job in list(self._pending):
                if job.run_dir == run:
                    self._pending.remove(job)
                    job.state, job.ended_at = "cancelled", time.time()
                    self._write(job)
                    return f"{job.kind} removed from the queue"
            job = next((j for j in self.jobs if j.run_dir == run and j.state == "running"), None)
            if job is None or job.proc is None:
                return "nothing running for this run"
            job.state = "stopping"
            self._write(job)
            job.proc.send_signal(signal.SIGINT)
            return f"{job.kind}: asked to stop (SIGINT: checkpoint after this step, then exit)"

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker; a running job gets SIGINT and ``timeout`` seconds to checkpoint."""
        self._closed = True
        self._wake.set()
        job = self.running()
        if job is not None and job.proc is not None:
            job.proc.send_signal(signal.SIGINT)
            try:
                job.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                job.proc.kill()
        self._thread.join(timeout=5)

    # -- worker ------------------------------------------------------------------------------
    def _write(self, job: Job) -> None:
        path = job.run_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job.as_dict(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    def _loop(self) -> None:
        while not self._closed:
            with self._lock:
                job = self._pending.popleft() if self._pending else None
            if job is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        cmd = [sys.executable, "-m", "tunesmith", *job.argv]
        with job.log.open("ab") as log:
            log.write(f"$ tunesmith {' '.join(job.argv)}\n".encode())
            log.flush()
            with self._lock:
                job.proc = subprocess.Popen(
                    cmd,
                    cwd=self.workdir,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
                job.pid, job.state, job.started_at = job.proc.pid, "running", time.time()
                self._write(job)
            code = job.proc.wait()
        with self._lock:
            stopped = job.state == "stopping"
            job.returncode, job.ended_at = code, time.time()
            job.state = "stopped" if stopped else "done" if code == 0 else "failed"
            job.proc = None
            self._write(job)
