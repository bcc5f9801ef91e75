"""The identity demo end to end in two precisions, on several seeds: speed and held-out scores.

For each seed, ``tunesmith train identity train.seed=S train.precision=P`` runs once per
precision (each in its own process, fresh model build and data included, as the README's command
does), then ``tunesmith eval identity RUN --json`` scores it. The precisions alternate and swap
order from one seed to the next (A B, B A, A B, ...), so a slow spell on a shared machine falls on
both. Every run lists its wall time, training time and median step from ``train_summary.json``,
peak RSS, what ``auto`` chose, the held-out identity score, the false-claim rate and the CPU
cores other processes used meanwhile (``/proc/stat``; above ~0.1 the run's times are suspect).

The summary gives, per seed, the speed-up of the second precision over the first (training time
and whole-command wall time) and the score differences, then the medians over seeds. The last
line is ``speedup_train=X speedup_wall=Y`` (medians). The figure the README quotes is measured
this way: ``python bench/identity_bench.py`` (fp32 against auto on seeds 42, 1, 2, 3; about 20
minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vs_llamafactory_helper import machine_busy_s, others_cores


def _tunesmith(args: list[str], log: Path) -> float:
    """Run ``tunesmith ARGS`` with its output in ``log``; its wall time in seconds."""
    env = {**os.environ, "COLUMNS": "200"}
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            [sys.executable, "-m", "tunesmith", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
        raise SystemExit(f"tunesmith {' '.join(args)} failed ({log}):\n" + "\n".join(tail))
    return time.perf_counter() - start


def run_once(work: Path, seed: int, precision: str, extra: list[str]) -> dict:
    """Train and score one (seed, precision); the figures of that run."""
    run = work / f"seed{seed}_{precision}"

    def children_cpu_s() -> float:  # CPU time of the children waited for so far
        t = os.times()
        return t.children_user + t.children_system

    cpu0, busy0 = children_cpu_s(), machine_busy_s()
    overrides = [f"train.seed={seed}", f"train.precision={precision}", f"output.dir={run}"]
    wall = _tunesmith(
        ["train", "identity", "--overwrite", *overrides, *extra], work / f"{run.name}.train.log"
    )
    others = others_cores(machine_busy_s() - busy0, children_cpu_s() - cpu0, wall)
    _tunesmith(["eval", "identity", str(run), "--json"], work / f"{run.name}.eval.log")
    lines = (work / f"{run.name}.eval.log").read_text(encoding="utf-8").splitlines()
    scores = json.loads(next(x for x in reversed(lines) if x.startswith("{")))
    summary = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))
    metrics = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    rss = max(json.loads(x).get("rss_peak_mib", 0.0) for x in metrics if x.strip())
    log = " ".join((work / f"{run.name}.train.log").read_text(encoding="utf-8").split())
    chose = re.search(r"precision auto -> (\w+)", log)
    return {
        "seed": seed,
        "precision": precision,
        "ran": chose.group(1) if chose else precision,
        "wall_s": wall,
        "train_s": summary["seconds"],
        "median_step_s": summary["median_step_s"],
        "steps": summary["steps"],
        "rss_mib": rss,
        "identity": scores["identity_score"],
        "false_claims": scores["false_claim_rate"],
        "others_cores": others,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3])
    parser.add_argument(
        "--precisions", nargs=2, default=["fp32", "auto"], metavar=("BASE", "OTHER")
    )
    parser.add_argument("--work", type=Path, help="where the runs go (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="identity_bench_"))
    work.mkdir(parents=True, exist_ok=True)

    from tunesmith.sysinfo import cpu_info

    cpu = cpu_info()
    flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "none of note"
    print(f"CPU: {cpu['model']}, {cpu['cores']} logical cores ({flags}); runs in {work}")
    base, other = args.precisions
    rows: list[dict] = []
    for i, seed in enumerate(args.seeds):
        for precision in (base, other) if i % 2 == 0 else (other, base):
            r = run_once(work, seed, precision, args.overrides)
            rows.append(r)
            print(
                f"seed {seed:>4} {precision:>5} (ran {r['ran']}): wall {r['wall_s']:6.1f} s, "
                f"train {r['train_s']:6.1f} s, median step {r['median_step_s']:.3f} s, "
                f"peak RSS {r['rss_mib']:,.0f} MiB, identity {r['identity']:.3f}, "
                f"false claims {r['false_claims']:.4f}, others {r['others_cores']:.2f} cores",
                flush=True,
            )
    train_x, wall_x = [], []
    print(f"\n{other} against {base}:")
    for seed in args.seeds:
        a, b = (
            next(r for r in rows if r["seed"] == seed and r["precision"] == p)
            for p in (base, other)
        )
        train_x.append(a["train_s"] / b["train_s"])
        wall_x.append(a["wall_s"] / b["wall_s"])
        print(
            f"seed {seed:>4}: train {train_x[-1]:.2f}x, wall {wall_x[-1]:.2f}x, "
            f"identity {a['identity']:.3f} -> {b['identity']:.3f}, "
            f"false claims {a['false_claims']:.4f} -> {b['false_claims']:.4f}"
        )
    median_train, median_wall = statistics.median(train_x), statistics.median(wall_x)
    print(f"speedup_train={median_train:.2f} speedup_wall={median_wall:.2f}")


if __name__ == "__main__":
    main()
