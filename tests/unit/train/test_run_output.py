"""What a run leaves in and says about its directory (issues 14, 15): the metrics trim on resume,
the overwrite policy, quiet third-party deprecations, plain log lines for ``--no-progress``."""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tunesmith.config.load import load_config
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.train.recipes.sft import prepare_run_dir


def _cfg(run_dir: Path, *overrides: str) -> Any:
    tree = {"data": {"datasets": [{"path": "x.jsonl"}]}, "output": {"dir": str(run_dir)}}
    return load_config(tree=tree, overrides=list(overrides))


def _records(*steps: int) -> str:
    return "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in steps)


def _finished(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(_records(1, 2))
    (run_dir / "train_summary.json").write_text("{}")
    (run_dir / "model").mkdir()
    return run_dir


# ---- issue 14: the metrics trim tolerates a torn last line ------------------------------------
def test_resume_trims_metrics_with_a_torn_last_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(_records(1, 2, 3) + '{"step": 4, "lo')  # killed while appending
    prepare_run_dir(_cfg(run_dir), resume_step=2)
    assert metrics.read_text() == _records(1, 2)


def test_metrics_read_skips_a_torn_last_line_but_names_a_damaged_one(tmp_path: Path) -> None:
    from tunesmith.train.callbacks import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.path.write_text(_records(1, 2) + '{"step": 3, "lo')
    assert [r["step"] for r in log.read()] == [1, 2]
    log.trim(10)
    log.write({"step": 3})  # appended on a line of its own
    assert [r["step"] for r in log.read()] == [1, 2, 3]
    log.path.write_text(_records(1) + "garbage\n" + _records(2))
    with pytest.raises(TunesmithError, match=rf"^{re.escape(str(log.path))}:2: not a JSON object"):
        log.read()


# ---- issue 15: a previous run is replaced only when asked ---------------------------------------
def test_overwrite_defaults_to_false(tmp_path: Path) -> None:
    assert _cfg(tmp_path).output.overwrite is False


def test_a_finished_run_is_kept_unless_overwrite(tmp_path: Path) -> None:
    run_dir = _finished(tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        prepare_run_dir(_cfg(run_dir))
    assert str(err.value) == (
        f"output.dir {run_dir}: holds a finished run (model, train_summary.json); pass "
        "--overwrite (output.overwrite=true) to replace it, or choose another output.dir"
    )
    assert (run_dir / "train_summary.json").is_file()


def test_an_unfinished_run_with_checkpoints_points_to_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step-00000006").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(_records(1))
    with pytest.raises(ConfigError) as err:
        prepare_run_dir(_cfg(run_dir))
    message = str(err.value)
    assert message.startswith(f"output.dir {run_dir}: holds an unfinished run (checkpoints")
    assert "--resume to continue it" in message and "output.overwrite=true" in message


def test_overwrite_replaces_the_previous_run_and_says_so(tmp_path: Path) -> None:
    run_dir = _finished(tmp_path / "run")
    (run_dir / "notes.txt").write_text("mine")  # not a run file: kept
    notes: list[str] = []
    prepare_run_dir(_cfg(run_dir, "output.overwrite=true"), say=notes.append)
    assert notes == [f"output.overwrite: replacing the finished run in {run_dir}"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "notes.txt"]


def test_a_setup_that_failed_is_no_run_to_keep(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("old")  # a run that stopped on a config error
    (run_dir / "data_report.md").write_text("old")
    notes: list[str] = []
    prepare_run_dir(_cfg(run_dir), say=notes.append)
    assert notes == [] and not (run_dir / "data_report.md").exists()


def test_resume_without_checkpoint_starts_fresh_and_says_so(tmp_path: Path) -> None:
    from tunesmith.train.run_dir import open_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(_records(1))  # killed before its first checkpoint
    notes: list[str] = []
    ckpt, out = open_run(_cfg(run_dir, "train.resume=auto"), notes.append)
    assert ckpt is None and out == run_dir
    assert notes == [f"train.resume: no checkpoint in {run_dir / 'checkpoints'}; starting fresh"]
    assert not (run_dir / "metrics.jsonl").exists()


def test_resume_cannot_continue_a_finished_run_without_checkpoints(tmp_path: Path) -> None:
    from tunesmith.train.run_dir import open_run

    run_dir = _finished(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"--resume has nothing to continue; pass --overwrite"):
        open_run(_cfg(run_dir, "train.resume=auto"), lambda _: None)


def test_cli_overwrite_flag_sets_output_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunesmith.cli import main
    from tunesmith.train.recipes import sft

    seen: list[Any] = []
    monkeypatch.setattr(sft, "run", lambda cfg, **_: seen.append(cfg))
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps({"data": {"datasets": [{"path": "x.jsonl"}]}}))
    assert main(["train", str(path), "--overwrite"]) == 0
    assert main(["train", str(path)]) == 0
    assert [c.output.overwrite for c in seen] == [True, False]


# ---- issue 15: third-party deprecation noise ----------------------------------------------------
def _warn_from(module: str, category: type[Warning]) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        from tunesmith.quiet import quiet_third_party

        quiet_third_party()
        warnings.warn_explicit("deprecated", category, f"{module}.py", 1, module=module)
    return [f"{w.category.__name__}: {w.message}" for w in seen]


def test_third_party_deprecations_are_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNESMITH_VERBOSE", raising=False)
    monkeypatch.setattr("sys.warnoptions", [])
    assert _warn_from("transformers.modeling_utils", FutureWarning) == []
    assert _warn_from("peft.peft_model", DeprecationWarning) == []
    assert _warn_from("tunesmith.train.loop", FutureWarning) != []  # ours: to be fixed, not hidden
    assert _warn_from("transformers.trainer", UserWarning) != []  # not a deprecation


def test_third_party_deprecations_show_when_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNESMITH_VERBOSE", "1")
    assert _warn_from("transformers.modeling_utils", FutureWarning) != []
    monkeypatch.delenv("TUNESMITH_VERBOSE")
    monkeypatch.setattr("sys.warnoptions", ["default"])  # python -W ...: the user's own choice
    assert _warn_from("transformers.modeling_utils", FutureWarning) != []


# ---- issue 15: --no-progress logs plain lines ----------------------------------------------------
def test_plain_progress_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesmith.train import callbacks

    clock = iter([100.0, 112.0, 124.0])
    monkeypatch.setattr(callbacks, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    out = io.StringIO()
    stats = {"loss": 1.23456, "lr": 2e-4, "tokens_per_s": 4821.4}
    with callbacks.ProgressBar(12, plain=True, start=2, stream=out) as bar:
        bar.update(4, stats)
        bar.update(6, {**stats, "rewards/accuracies": 0.75})
    assert out.getvalue().splitlines() == [
        "step 4/12  loss 1.2346  lr 2.00e-04  4,821 tok/s  elapsed 0:00:12  eta 0:00:48",
        "step 6/12  loss 1.2346  lr 2.00e-04  4,821 tok/s  acc 0.75  elapsed 0:00:24  eta 0:00:36",
    ]


def test_a_disabled_bar_prints_nothing() -> None:
    from tunesmith.train.callbacks import ProgressBar

    out = io.StringIO()
    with ProgressBar(3, enabled=False, plain=True, stream=out) as bar:
        bar.update(1, {"loss": 1.0, "lr": 1e-3, "tokens_per_s": 1.0})
    assert out.getvalue() == ""
