"""The board's queue runs CLI verbs one at a time and keeps their state in the run directory;
the Run tab's view is read back from that directory alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tunesmith.board import runview
from tunesmith.board.jobs import STATE_FILE, JobQueue, read_state
from tunesmith.config.load import dump_config, load_config


def _wait(queue: JobQueue, run: Path, timeout: float = 120) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = read_state(run)
        if state and state["state"] in ("done", "failed", "stopped", "cancelled"):
            return state
        time.sleep(0.1)
    raise AssertionError(read_state(run))


def test_jobs_run_one_at_a_time_with_their_state_on_disk(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    try:
        a = queue.submit("validate", ["validate", "sft-lora"], "runs/a", "board.log")
        b = queue.submit("validate", ["validate", "sft-lora", "train.lr=-1"], "runs/b", "board.log")
        c = queue.submit("validate", ["validate", "sft-lora"], "runs/c", "board.log")
        assert read_state(tmp_path / "runs/c")["state"] == "queued"
        assert queue.stop(tmp_path / "runs/c") == "validate removed from the queue"
        done_a, done_b = _wait(queue, a.run_dir), _wait(queue, b.run_dir)
    finally:
        queue.close()
    assert done_a["state"] == "done" and done_a["returncode"] == 0
    assert done_b["state"] == "failed" and done_b["returncode"] == 2
    assert done_b["started_at"] >= done_a["ended_at"]  # b waited for a
    assert read_state(c.run_dir)["state"] == "cancelled" and c.proc is None
    assert "name: sft-lora" in (a.run_dir / "board.log").read_text()
    log_b = (b.run_dir / "board.log").read_text()
    assert log_b.splitlines()[0] == "$ tunesmith validate sft-lora train.lr=-1"
    assert "sft-lora.yaml: train.lr: Input should be greater than 0\n" in log_b


def test_a_running_job_whose_process_is_gone_reads_as_lost(tmp_path: Path) -> None:
    state = {"kind": "train", "state": "running", "pid": 2**22 + 12345, "log": "board.log"}
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    assert read_state(tmp_path)["state"] == "lost"


def test_run_view_reads_progress_metrics_and_curves(tmp_path: Path) -> None:
    tmp_path = tmp_path / "run"
    tmp_path.mkdir()
    cfg = load_config(tree={"data": {"datasets": [{"path": "builtin:general"}]}})
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    (tmp_path / "board.log").write_text(
        "$ tunesmith train x.yaml --no-progress\nstep 1/6  loss 8.38\nstep 2/6  loss 8.31\n"
    )
    rows = [{"step": 1, "loss": 8.38, "lr": 1e-4}, {"step": 2, "loss": 8.31, "lr": 1e-4}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / STATE_FILE).write_text(
        json.dumps({"kind": "train", "state": "stopped", "returncode": 0, "log": "board.log"})
    )
    st = runview.run_status(tmp_path)
    assert (st.step, st.total, st.fraction) == (2, 6, 2 / 6)
    assert st.headline() == "**train stopped**, step 2/6, loss 8.3100"
    assert 'data-step="2" data-total="6"' in runview.progress_html(st)
    page = runview.curve_html(tmp_path)
    assert 'data-points="2"' in page and page.count("<svg") == 1  # loss only (lr is no curve)
    assert runview.list_runs(tmp_path.parent) == [tmp_path]


def test_log_tail_keeps_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "board.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    text = runview.tail(log, limit=100)
    assert text.endswith("line 4999\n") and text.splitlines()[0].startswith("line ")
    assert len(text) <= 100 and runview.tail(tmp_path / "missing") == ""
