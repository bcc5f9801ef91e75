"""The per-iteration report: the Markdown table, the files, and compare reading them."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.api import load_config
from tunesmith.evaluate.compare import curves, metric_rows
from tunesmith.runs import load_run
from tunesmith.serval import report
from tunesmith.serval.loop import link_model, prepare_dir

UPPER = {"acc": 0.9, "auc": 0.95}


def rows() -> list[dict[str, object]]:
    base = {"agreement": 0.5, "kept": 120, "clean": 90, "backtune_rows": 80, "test": 300}
    return [
        {"iteration": 1, "llm_acc": 0.5, "llm_acc_cal": 0.55, "llm_auc": 0.6, **base},
        {
            "iteration": 2,
            "llm_acc": 0.625,
            "llm_acc_cal": 0.7,
            "llm_auc": float("nan"),
            "vertical_acc": 0.8,
            "vertical_auc": 0.85,
            "final_llm_acc": 0.75,
            "final_llm_acc_cal": 0.76,
            "final_llm_auc": 0.8,
            **base,
        },
    ]


def test_markdown_table_final_line_and_upper_bound() -> None:
    text = report.markdown(rows(), UPPER)
    lines = text.splitlines()
    assert lines[0].startswith("| iter | LLM acc | LLM acc (centred) | LLM AUC | vertical acc |")
    assert lines[2] == "| 1 | 0.500 | 0.550 | 0.600 | — | — | 0.500 | 120 | 90 | 80 |"
    assert lines[3] == "| 2 | 0.625 | 0.700 | — | 0.800 | 0.850 | 0.500 | 120 | 90 | 80 |"
    assert "LLM after the last back-tuning: acc 0.750, acc (centred) 0.760, AUC 0.800" in text
    assert text.rstrip().endswith("upper bound): acc 0.900, AUC 0.950")


def test_write_gives_every_file_and_compare_reads_the_run(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        run = tmp_path / name
        prepare_dir(run, load_config("serval-demo", f"output.dir={run}"), overwrite=False)
        report.write(run, rows(), UPPER)
        runs.append(load_run(run))
    run = runs[0].dir
    saved = json.loads((run / "serval_report.json").read_text())
    assert saved["iterations"][1]["llm_auc"] is None  # NaN is no JSON: written as null
    assert saved["upper_bound"] == UPPER
    assert (run / "serval_report.md").read_text() == report.markdown(rows(), UPPER)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1, 2]
    assert logged[0]["serval/llm_acc"] == 0.5 and logged[1]["serval/vertical_acc"] == 0.8
    assert (run / "serval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # compare: the iterations as curves, the last iteration and the upper bound as metric rows
    got = curves(runs)
    assert got["serval/llm_acc"][0].steps == (1, 2)
    assert got["serval/llm_acc"][0].values == (0.5, 0.625)
    table = {r.name: r.values for r in metric_rows(runs)}
    assert table["serval/vertical_acc"] == (0.8, 0.8)
    assert table["serval/upper_acc"] == (0.9, 0.9)
    assert "serval/llm_auc" not in table  # NaN: no value to compare
    assert "serval/test" not in table and "serval/iteration" not in table  # no scores
    assert table["serval/final_llm_acc"] == (0.75, 0.75)
    assert not runs[0].finished  # no LLM trained here yet: compare answers nothing for it


def test_link_model_points_at_the_final_llm(tmp_path: Path) -> None:
    run = tmp_path / "run"
    llm = run / "iter_2" / "llm"
    llm.mkdir(parents=True)
    (llm / "config.json").write_text("{}")
    link_model(run, llm)
    assert (run / "model").is_symlink() and (run / "model" / "config.json").is_file()
    assert str((run / "model").readlink()) == "iter_2/llm"  # relative: the folder can move
    link_model(run, run / "iter_2" / "llm")  # again: replaced, not an error
    link_model(tmp_path / "other", llm)  # an LLM outside the run: no link
    assert not (tmp_path / "other").exists()
