"""Helper of ``bench/vs_llamafactory.sh`` (not a tunesmith module; run by the script only).

Subcommands:

* ``lf-train CFG.yaml OUT.json [--xcheck]`` — runs inside the throw-away LLaMA-Factory venv:
  trains through LLaMA-Factory's own entry point (``llamafactory.train.tuner.run_exp``, the
  function ``llamafactory-cli train`` calls) with one extra ``TrainerCallback`` that measures
  and changes nothing in the run:

  - a forward pre-hook counts the **real** tokens of every batch, ``input_ids != pad_token_id``
    (LLaMA-Factory pads with the pad token both when padding batches and when filling packed
    rows to ``cutoff_len + 1``; the bench data never contains the pad token itself). The
    Trainer's own ``include_num_input_tokens_seen`` cannot be used for every mode: with
    ``"all"`` it counts padding, with ``"non_padding"`` it sums ``attention_mask``, which with
    ``neat_packing`` on a non-flash backend is a 4-D float mask (0 / dtype-min), so the sum is
    meaningless. The default (padded) run also sets ``"non_padding"`` and the script checks
    both counts agree there.
  - ``on_step_end`` timestamps every optimiser step (``perf_counter``) and records the tokens
    of that step; ``on_log`` keeps the logged loss per step.
  - ``on_train_begin`` describes the tokenised training set (samples, real and trained tokens)
    so the script can show both tools train on the same text.
  - with ``--xcheck`` a forward hook on the first forward pass also recomputes the loss on
    the exact label set tunesmith trains: LLaMA-Factory's ``chatml`` template trains the
    ``"\\n"`` that follows each ``<|im_end|>``, tunesmith (the tokenizer's own template) trains
    the assistant text and ``<|im_end|>`` only; dropping the labels right after ``<|im_end|>``
    gives the same label set.

* ``lf-summary OUT.json WARMUP`` / ``ts-summary metrics.jsonl WARMUP`` — one JSON line:
  real tokens/s over steps ``WARMUP+1 .. N`` measured the same way for both tools: real tokens
  of those steps divided by the wall time from the end of step ``WARMUP`` to the end of step N
  (so model load, preprocessing and the first warm-up steps are excluded, and everything the
  loop does per step — data loading, collation, forward, backward, optimiser, logging — is
  included). The median of the per-step rates is printed too (less sensitive to bursts of load
  from other processes on a shared machine). tunesmith logs (with ``train.log_every: 1``) per
  step ``tokens_per_s`` = real tokens fed / the step's window, and ``elapsed_s`` at the step's
  end; a step's tokens are
  ``tokens_per_s * (elapsed_s[i] - elapsed_s[i-1])`` (``elapsed_s`` is rounded to 10 ms, so the
  sum is good to a fraction of a percent).

* ``slice SRC_DIR N_ALPACA N_IDENTITY DEST_DIR`` — writes the cross-check slice: the first
  rows of alpaca_en_demo.json and identity.json as one file, plus a dataset_info.json for it.

* ``report WORK STEPS WARMUP`` — the script's printed report from the files in ``WORK``.

* ``busy`` — the machine's busy CPU seconds so far (``/proc/stat``), read before and after a run;
  ``usage TIME_V_FILE BUSY0 BUSY1`` — peak RSS (MiB), CPU and wall seconds of the run from
  ``/usr/bin/time -v``, and how many cores *other* processes kept busy meanwhile (the machine's
  busy time minus the run's own CPU time, over the run's wall time): a noise indicator on a
  shared machine.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path


def lf_train(cfg_path: str, out_path: str, xcheck: bool) -> None:
    import torch
    import yaml
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    args = yaml.safe_load(Path(cfg_path).read_text(encoding="utf-8"))
    record: dict = {"steps": [], "loss": {}, "data": {}, "xcheck": None}
    state = {"tokens": 0, "pad": None, "im_end": None, "forwards": 0}

    def count_tokens(_module, a, kw):
        ids = kw.get("input_ids") if kw.get("input_ids") is not None else (a[0] if a else None)
        if ids is not None and torch.is_grad_enabled():  # training forwards only
            state["tokens"] += int((ids != state["pad"]).sum())

    def recompute_loss(_module, _a, kw, out):
        state["forwards"] += 1
        if state["forwards"] != 1:
            return
        with torch.no_grad():
            logits = out.logits[:, :-1].float()
            labels = kw["labels"][:, 1:]
            prev = kw["input_ids"][:, :-1]
            ce = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)),
                labels.reshape(-1),
                ignore_index=-100,
                reduction="none",
            ).view_as(labels)
            mask_lf = labels != -100
            mask_ts = mask_lf & (prev != state["im_end"])
            record["xcheck"] = {
                "loss_lf_labels": float(ce[mask_lf].sum() / mask_lf.sum()),
                "loss_tunesmith_labels": float(ce[mask_ts].sum() / mask_ts.sum()),
                "trained_lf_labels": int(mask_lf.sum()),
                "trained_tunesmith_labels": int(mask_ts.sum()),
                "real_tokens": int((kw["input_ids"] != state["pad"]).sum()),
            }

    class Probe(TrainerCallback):
        def on_train_begin(self, targs, tstate, control, **kw):
            model, tok = kw["model"], kw.get("processing_class")
            state["pad"] = tok.pad_token_id
            state["im_end"] = tok.convert_tokens_to_ids("<|im_end|>")
            model.register_forward_pre_hook(count_tokens, with_kwargs=True)
            if xcheck:
                model.register_forward_hook(recompute_loss, with_kwargs=True)
            record["data"] = describe(kw["train_dataloader"].dataset, state["pad"], state["im_end"])
            record["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
            record["checkpointing"] = bool(getattr(model, "is_gradient_checkpointing", False))
            record["t_begin"] = time.perf_counter()

        def on_step_end(self, targs, tstate, control, **kw):
            record["steps"].append(
                {
                    "step": tstate.global_step,
                    "t": time.perf_counter(),
                    "tokens": state["tokens"],
                    "seen_by_trainer": tstate.num_input_tokens_seen,
                }
            )
            state["tokens"] = 0

        def on_log(self, targs, tstate, control, logs=None, **kw):
            if logs and "loss" in logs:
                record["loss"][str(tstate.global_step)] = logs["loss"]

    run_exp(args, callbacks=[Probe()])
    Path(out_path).write_text(json.dumps(record), encoding="utf-8")


def describe(dataset, pad: int, im_end: int) -> dict:
    """Samples, rows, real tokens and trained tokens of LLaMA-Factory's tokenised train set."""
    rows = samples = real = trained = trained_ts = 0
    longest = 0
    packed = "position_ids" in dataset.column_names
    for ex in dataset:
        ids, labels = ex["input_ids"], ex["labels"]
        rows += 1
        n_real = sum(1 for t in ids if t != pad)
        real += n_real
        longest = max(longest, n_real)
        if packed:  # each packed sample restarts its position ids at 0 (padding is all 0 too)
            pos = ex["position_ids"]
            samples += sum(1 for i, p in enumerate(pos) if p == 0 and ids[i] != pad)
        else:
            samples += 1
        for j in range(1, len(ids)):  # position 0 predicts nothing after the shift
            if labels[j] != -100:
                trained += 1
                trained_ts += ids[j - 1] != im_end
    return {
        "rows": rows,
        "samples": samples,
        "real_tokens": real,
        "trained_tokens": trained,
        "trained_tokens_tunesmith_labels": trained_ts,
        "longest": longest,
    }


def throughput(steps: list[tuple[float, float]], warmup: int) -> dict:
    """``steps``: (end time, real tokens) per step, in order; rate over steps after ``warmup``.

    ``warmup`` must be at least 1: the clock starts at the end of a step (the start of step 1 is
    not a moment both tools record). Too few steps (the 1-step cross-check runs): no rate.
    """
    if warmup < 1:
        raise SystemExit("warm-up must be at least 1 step")
    if len(steps) <= warmup:
        return {"tokens_per_s": None, "steps": len(steps)}
    t0 = steps[warmup - 1][0]
    tokens = sum(tok for _, tok in steps[warmup:])
    seconds = steps[-1][0] - t0
    ends = [t0] + [t for t, _ in steps[warmup:]]
    rates = [tok / (ends[i + 1] - ends[i]) for i, (_, tok) in enumerate(steps[warmup:])]
    return {
        "tokens_per_s": tokens / seconds,
        "median_step_tokens_per_s": statistics.median(rates),
        "tokens": tokens,
        "seconds": seconds,
        "measured_steps": len(steps) - warmup,
        "steps": len(steps),
    }


def lf_summary(path: str, warmup: int) -> None:
    rec = json.loads(Path(path).read_text(encoding="utf-8"))
    steps = [(s["t"], s["tokens"]) for s in rec["steps"]]
    out = throughput(steps, warmup)
    out["loss_step1"] = rec["loss"].get("1")
    out["data"] = rec["data"]
    seen = [s["seen_by_trainer"] for s in rec["steps"]]
    out["trainer_tokens_seen"] = seen[-1] if seen else None
    out["probe_tokens_total"] = sum(s["tokens"] for s in rec["steps"])
    out["xcheck"] = rec["xcheck"]
    out["trainable"] = rec.get("trainable")
    out["checkpointing"] = rec.get("checkpointing")
    print(json.dumps(out))


def ts_summary(path: str, warmup: int) -> None:
    recs = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
    recs = [r for r in recs if "tokens_per_s" in r]
    by_step = {r["step"]: r for r in recs}
    n = max(by_step)
    if sorted(by_step) != list(range(1, n + 1)):
        raise SystemExit(f"{path}: expected one record per step (train.log_every: 1)")
    steps, prev = [], None
    for i in range(1, n + 1):
        r = by_step[i]
        # step 1's window starts before the loop's first step; it is a warm-up step either way
        dt = r["elapsed_s"] - prev if prev is not None else 0.0
        steps.append((r["elapsed_s"], r["tokens_per_s"] * dt))
        prev = r["elapsed_s"]
    out = throughput(steps, warmup)
    out["loss_step1"] = by_step[1]["loss"]
    print(json.dumps(out))


def make_slice(src: str, n_alpaca: int, n_identity: int, dest: str) -> None:
    src_dir, dest_dir = Path(src), Path(dest)
    rows = json.loads((src_dir / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:n_alpaca]
    rows += json.loads((src_dir / "identity.json").read_text(encoding="utf-8"))[:n_identity]
    dest_dir.mkdir(parents=True, exist_ok=True)
    (dest_dir / "xcheck.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    info = {"xcheck": {"file_name": "xcheck.json"}}
    (dest_dir / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all processes), from /proc/stat."""
    fields = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def others_cores(machine_busy: float, own_cpu_s: float, wall_s: float) -> float:
    """Cores other processes kept busy during a run: the machine's busy CPU seconds over the run
    (``machine_busy_s`` after minus before) less the run's own CPU time, per second of wall time.
    """
    return max(machine_busy - own_cpu_s, 0.0) / max(wall_s, 1e-9)


def busy() -> None:
    """Print ``machine_busy_s`` as one JSON line."""
    print(json.dumps({"busy_s": machine_busy_s()}))


def usage(time_v: str, busy0: str, busy1: str) -> None:
    """Peak RSS, CPU and wall time of a run (``/usr/bin/time -v``), and what others used."""
    info: dict[str, float] = {}
    for line in Path(time_v).read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key == "Maximum resident set size (kbytes)":
            info["peak_rss_mib"] = int(value) / 1024
        elif key in ("User time (seconds)", "System time (seconds)"):
            info["cpu_s"] = info.get("cpu_s", 0.0) + float(value)
        elif key.startswith("Elapsed (wall clock) time"):
            parts = [float(x) for x in value.split(":")]
            info["wall_s"] = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    before, after = (json.loads(Path(p).read_text())["busy_s"] for p in (busy0, busy1))
    info["others_cores"] = others_cores(after - before, info["cpu_s"], info["wall_s"])
    print(json.dumps(info))


def median(work: str, name: str, rounds: int) -> None:
    """Print the round (1-based) whose rate is the median of ``name``'s rounds.

    Every round is listed on stderr with the load other processes put on the machine during it,
    so a round slowed by a neighbour is visible. The median (lower median for an even count)
    rather than the best round: one lucky quiet moment must not decide a ratio.
    """
    w = Path(work)
    rates, others = [], []
    for r in range(1, rounds + 1):
        summary = json.loads((w / f"{name}.r{r}.summary").read_text(encoding="utf-8"))
        used = json.loads((w / f"{name}.r{r}.usage").read_text(encoding="utf-8"))
        rates.append(summary["tokens_per_s"])
        others.append(used["others_cores"])
    listed = ", ".join(f"{x:,.0f} (others {o:.2f} cores)" for x, o in zip(rates, others))
    print(f"  {name:16s} rounds: {listed} real tokens/s", file=sys.stderr)
    order = sorted(range(rounds), key=lambda i: rates[i])
    print(order[(rounds - 1) // 2] + 1)


def report(work: str, steps: int, warmup: int) -> None:
    """The script's report; its last two lines are the ratios."""
    w = Path(work)

    def load(name: str) -> dict:
        return json.loads((w / f"{name}.summary").read_text(encoding="utf-8"))

    def usage(name: str) -> dict:
        return json.loads((w / f"{name}.usage").read_text(encoding="utf-8"))

    metrics = (w / "xcheck_tunesmith_run" / "metrics.jsonl").read_text(encoding="utf-8")
    ts_x = json.loads(metrics.splitlines()[0])
    print("step-1 loss on the same 8-sample batch (same initial weights):")
    xchecks = {n: load(f"xcheck_{n}")["xcheck"] for n in ("lf_default", "lf_neat_packing")}
    for n, x in xchecks.items():
        logged = load(f"xcheck_{n}")["loss_step1"]
        print(
            f"  {n:16s} logged {logged:.6f} on its {x['trained_lf_labels']} "
            f"labels; {x['loss_tunesmith_labels']:.6f} on tunesmith's label set "
            f"({x['trained_tunesmith_labels']}: without the \\n after <|im_end|>); "
            f"{x['real_tokens']} real tokens"
        )
    print(f"  {'tunesmith':16s} logged {ts_x['loss']:.6f} on its {ts_x['trained_tokens']} labels")
    diff = max(abs(ts_x["loss"] - x["loss_tunesmith_labels"]) for x in xchecks.values())
    same = all(x["trained_tunesmith_labels"] == ts_x["trained_tokens"] for x in xchecks.values())
    verdict = "agree" if diff < 1e-3 and same else "DISAGREE"
    print(
        f"  cross-check: {verdict} (max |tunesmith - LF| on the same labels = {diff:.1e}; "
        f"same label count: {same})"
    )

    st = json.loads((w / "ts_stats.json").read_text(encoding="utf-8"))
    d, dn = load("lf_default")["data"], load("lf_neat_packing")["data"]
    print("training data (one epoch):")
    print(
        f"  LLaMA-Factory  {d['samples']} samples, {d['real_tokens']:,} real tokens, "
        f"{d['trained_tokens']:,} trained ({d['trained_tokens_tunesmith_labels']:,} without "
        f"the \\n after <|im_end|>), longest {d['longest']}; neat packing: {dn['rows']} rows, "
        f"{dn['real_tokens']:,} real tokens"
    )
    approx_real = round(st["length"]["mean"] * st["samples"])
    print(
        f"  tunesmith      {st['samples']} samples, ~{approx_real:,} "
        f"real tokens (mean length x samples), {st['trained_tokens']:,} trained, longest "
        f"{st['length']['max']}; packing: {st['packed_rows']} rows"
    )
    lfd = load("lf_default")
    log = (w / "tunesmith.log").read_text(encoding="utf-8", errors="replace")
    found = re.search(r"trainable ([\d,]+)", log)
    ts_trainable = found.group(1) if found else "?"
    lf_gc = [load(n)["checkpointing"] for n in ("lf_default", "lf_neat_packing")]
    print(
        f"  trainable parameters: LLaMA-Factory {lfd['trainable']:,}, tunesmith {ts_trainable}; "
        f"LF gradient checkpointing: {'on' if any(lf_gc) else 'off'}"
    )
    agree = "equal" if lfd["probe_tokens_total"] == lfd["trainer_tokens_seen"] else "DIFFERENT"
    print(
        f"  LF real-token count (lf_default): probe {lfd['probe_tokens_total']:,}, Trainer "
        f"non_padding {lfd['trainer_tokens_seen']:,} ({agree})"
    )

    print(f"throughput ({steps} steps of batch 8; steps {warmup + 1}..{steps} timed):")
    names = ("lf_default", "lf_neat_packing", "tunesmith")
    res = {n: load(n) for n in names}
    for n, r in res.items():
        u = usage(n)
        print(
            f"  {n:16s} {r['tokens_per_s']:7,.0f} real tokens/s ({r['tokens']:,.0f} tokens in "
            f"{r['seconds']:.1f} s, {r['seconds'] / r['measured_steps']:.2f} s/step; median step "
            f"{r['median_step_tokens_per_s']:,.0f}/s)  peak RSS {u['peak_rss_mib']:,.0f} MiB  "
            f"[run {u['cpu_s'] / u['wall_s']:.2f} cores, others {u['others_cores']:.2f} cores]"
        )
    busy = max(usage(n)["others_cores"] for n in names)
    if busy > 0.2:
        print(
            f"  note: other processes kept up to {busy:.2f} of {os.cpu_count()} cores busy during "
            "a run: the numbers are noisy (rerun on a quiet machine to compare)"
        )
    ts = res["tunesmith"]["tokens_per_s"]
    print(f"ratio_vs_lf_default={ts / res['lf_default']['tokens_per_s']:.2f}")
    print(f"ratio_vs_lf_neat_packing={ts / res['lf_neat_packing']['tokens_per_s']:.2f}")


def main() -> None:
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "lf-train":
        lf_train(rest[0], rest[1], "--xcheck" in rest[2:])
    elif cmd == "lf-summary":
        lf_summary(rest[0], int(rest[1]))
    elif cmd == "ts-summary":
        ts_summary(rest[0], int(rest[1]))
    elif cmd == "slice":
        make_slice(rest[0], int(rest[1]), int(rest[2]), rest[3])
    elif cmd == "report":
        report(rest[0], int(rest[1]), int(rest[2]))
    elif cmd == "busy":
        busy()
    elif cmd == "usage":
        usage(rest[0], rest[1], rest[2])
    elif cmd == "median":
        median(rest[0], rest[1], int(rest[2]))
    else:
        raise SystemExit(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main()
