"""Atomic checkpoints and bit-exact resume (CPU, fp32)."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import get_scheduler

from tunesmith.errors import ConfigError
from tunesmith.train.batches import make_batches, micro_batch_stream
from tunesmith.train.checkpoint import (
    CHECKPOINT_DIR,
    find_latest,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)
from tunesmith.train.loop import train_step

torch.set_num_threads(1)  # deterministic and kind to the shared 2-core machine


@pytest.fixture
def accelerator(fp32_accelerator: Any) -> Any:
    return fp32_accelerator


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _schedule(optimizer: torch.optim.Optimizer, total: int) -> Any:
    return get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=total)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _assert_all_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    unequal = [n for n in a if not torch.equal(a[n], b[n])]
    assert not unequal, f"differ: {unequal[:5]}"


# ---------------------------------------------------------------------------------------------
# A tiny torch.nn model whose training draws from every RNG (torch dropout, NumPy, Python).


def _tiny_mlp() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 1)
    )
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)


def _mlp_step(model: Any, optimizer: Any, scheduler: Any, step: int) -> None:
    gen = torch.Generator().manual_seed(step)  # the data depends on the step only
    x = torch.randn(4, 8, generator=gen)
    x = x + torch.from_numpy(np.random.randn(4, 8).astype(np.float32)) * 0.1
    y = x.sum(dim=1, keepdim=True) * random.uniform(0.5, 1.5)
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("use_accelerator", [False, True])
def test_mlp_resume_is_bit_identical(
    tmp_path: Path, use_accelerator: bool, request: pytest.FixtureRequest
) -> None:
    acc = request.getfixturevalue("accelerator") if use_accelerator else None
    total, cut = 9, 4

    def build(seed: int) -> tuple[Any, Any, Any]:
        _seed(seed)
        model, opt = _tiny_mlp()
        sched = _schedule(opt, total)
        if acc is not None:
            model, opt = acc.prepare(model, opt)
        model.train()
        return model, opt, sched

    model, opt, sched = build(0)
    start = _params(model)
    for step in range(total):
        _mlp_step(model, opt, sched, step)
    expected = _params(model)
    expected_opt = opt.state_dict()
    expected_lr, expected_sched = sched.get_last_lr(), sched.state_dict()

    model, opt, sched = build(0)
    for step in range(cut):
        _mlp_step(model, opt, sched, step)
    save_checkpoint(
        tmp_path,
        cut,
        model=model,
        optimizer=opt,
        scheduler=sched,
        accelerator=acc,
        state={"step": cut},
        keep_last=2,
    )
    del model, opt, sched

    model, opt, sched = build(123)  # different init and RNG: everything must come from disk
    state = load_checkpoint(
        find_latest(tmp_path), model=model, optimizer=opt, scheduler=sched, accelerator=acc
    )
    assert state == {"step": cut}
    for step in range(state["step"], total):
        _mlp_step(model, opt, sched, step)

    assert any(not torch.equal(start[n], expected[n]) for n in start)
    _assert_all_equal(_params(model), expected)
    got_opt = opt.state_dict()
    for key, value in expected_opt["state"].items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(got_opt["state"][key][name], value[name])
    assert sched.get_last_lr() == expected_lr
    assert sched.state_dict() == expected_sched


# ---------------------------------------------------------------------------------------------
# A tiny Llama (full fine-tuning and LoRA) trained with the real loop: deterministic epoch
# batches, grad accumulation, Accelerate, dropout; resumed in the middle of an epoch.

TOTAL, ACCUM, BATCH = 8, 2, 2  # 12 samples -> 6 micro-batches -> 3 steps per epoch


def _samples() -> list[dict[str, Any]]:
    gen = random.Random(7)
    out = []
    for _ in range(12):
        ids = [gen.randrange(1, 128) for _ in range(gen.randrange(6, 14))]
        out.append({"input_ids": ids, "labels": [-100, *ids[1:]], "weights": None})
    return out


def _tiny_llama(method: str, seed: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        attention_dropout=0.1 if method == "full" else 0.0,
        pad_token_id=0,
    )
    torch.manual_seed(0)  # the same "pretrained" base in every run
    model = LlamaForCausalLM(config)
    model.config._attn_implementation = "sdpa"
    torch.manual_seed(seed)  # a different adapter init per run
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=4,
            lora_alpha=8,
            lora_dropout=0.1,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
        # peft starts B at zero; perturb it so the run does not depend on that.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.02)
    else:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 1e-3)
    return model


def _batches_for_epoch(samples: list[dict[str, Any]]) -> Any:
    def make(epoch: int) -> list[dict[str, Any]]:
        return make_batches(
            samples,
            batch_size=BATCH,
            max_length=32,
            packing=False,
            pad_token_id=0,
            seed=42 + epoch,
        )

    return make


def _resumed_stream(
    batches_for_epoch: Any, state: dict[str, Any] | None
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The recipe for the lead: restart at the saved epoch and skip its consumed steps."""
    if state is None:
        return micro_batch_stream(batches_for_epoch, ACCUM)
    stream = micro_batch_stream(batches_for_epoch, ACCUM, start_epoch=state["epoch"])
    for _ in range(state["steps_in_epoch"]):
        next(stream)
    return stream


def _run_llama(
    method: str, acc: Any, seed: int, *, stop: int, run_dir: Path | None, resume: bool
) -> tuple[Any, dict[str, Any]]:
    _seed(seed)
    model = _tiny_llama(method, seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=5e-3, weight_decay=0.01)
    sched = _schedule(opt, TOTAL)
    model, opt = acc.prepare(model, opt)
    model.train()
    state: dict[str, Any] | None = None
    if resume:
        assert run_dir is not None
        ckpt = resolve_resume(run_dir, "auto")
        state = load_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, accelerator=acc)
    fresh = state is None
    step = 0 if fresh else state["step"]
    epoch_now = 0 if fresh else state["epoch"]
    in_epoch = 0 if fresh else state["steps_in_epoch"]
    tokens = 0 if fresh else state["trained_tokens"]
    stream = _resumed_stream(_batches_for_epoch(_samples()), state)
    while step < stop:
        epoch, micro = next(stream)
        if epoch != epoch_now:
            epoch_now, in_epoch = epoch, 0
        stats = train_step(
            model, opt, sched, acc, micro, attn_implementation="sdpa", max_grad_norm=1.0
        )
        step, in_epoch, tokens = step + 1, in_epoch + 1, tokens + stats.tokens
        if run_dir is not None and step == stop:
            state = {
                "step": step,
                "epoch": epoch_now,
                "steps_in_epoch": in_epoch,
                "trained_tokens": tokens,
            }
            save_checkpoint(
                run_dir,
                step,
                model=model,
                optimizer=opt,
                scheduler=sched,
                accelerator=acc,
                state=state,
                keep_last=2,
            )
    return acc.unwrap_model(model), {"tokens": tokens, "epoch": epoch_now}


@pytest.mark.parametrize(
    ("method", "cut", "in_epoch"),
    [("lora", 4, 1), ("full", 4, 1), ("lora", 3, 3)],  # mid-epoch 1; end of epoch 0
)
def test_llama_resume_is_bit_identical(
    tmp_path: Path, accelerator: Any, method: str, cut: int, in_epoch: int
) -> None:
    expected, info = _run_llama(method, accelerator, 0, stop=TOTAL, run_dir=None, resume=False)
    assert info["epoch"] == 2  # the run crossed two epoch boundaries

    _run_llama(method, accelerator, 0, stop=cut, run_dir=tmp_path, resume=False)
    ckpt = find_latest(tmp_path)
    assert ckpt is not None and ckpt.name == f"step-{cut:08d}"
    saved_state = json.loads((ckpt / "state.json").read_text())
    assert (saved_state["epoch"], saved_state["steps_in_epoch"]) == ((cut - 1) // 3, in_epoch)
    resumed, info_r = _run_llama(method, accelerator, 99, stop=TOTAL, run_dir=tmp_path, resume=True)

    assert info_r == info
    _assert_all_equal(_params(resumed), _params(expected))
    base = _params(_tiny_llama(method, 5))
    changed = [n for n, p in _params(expected).items() if not torch.equal(p, base[n])]
    if method == "lora":
        from safetensors.torch import load_file

        saved = load_file(str(ckpt / "weights.safetensors"))
        assert saved and all("lora_" in n for n in saved)
        assert set(saved) == {n for n, p in resumed.named_parameters() if p.requires_grad}
        assert changed and all("lora_" in n for n in changed)  # the base stayed frozen
    else:
        assert len(changed) == len(base)


# ---------------------------------------------------------------------------------------------
# Files, atomicity, pruning, errors.


def _save(run_dir: Path, step: int, keep_last: int = 3, **state: Any) -> Path:
    model, opt = _tiny_mlp()
    sched = _schedule(opt, 10)
    return save_checkpoint(
        run_dir,
        step,
        model=model,
        optimizer=opt,
        scheduler=sched,
        state={"step": step, **state},
        keep_last=keep_last,
    )


def test_layout_and_checksums(tmp_path: Path) -> None:
    import hashlib

    path = _save(tmp_path, 10, epoch=0)
    assert path == tmp_path / CHECKPOINT_DIR / "step-00000010"
    marker = json.loads((path / "complete.json").read_text())
    assert marker["step"] == 10 and marker["time"] > 0
    assert set(marker["files"]) == {
        "weights.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "state.json",
        "rng-0.pt",
    }
    for name, digest in marker["files"].items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == digest
    assert json.loads((path / "state.json").read_text()) == {"step": 10, "epoch": 0}
    assert sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()) == ["step-00000010"]


def test_weights_round_trip_bit_exact(tmp_path: Path) -> None:
    _seed(1)
    model, opt = _tiny_mlp()
    model = model.to(torch.float64)  # dtype is kept as is
    opt = torch.optim.AdamW(model.parameters())
    before = _params(model)
    path = save_checkpoint(
        tmp_path,
        1,
        model=model,
        optimizer=opt,
        scheduler=_schedule(opt, 5),
        state={},
        keep_last=1,
    )
    _seed(2)
    other, _ = _tiny_mlp()
    other = other.to(torch.float64)
    opt2 = torch.optim.AdamW(other.parameters())
    load_checkpoint(path, model=other, optimizer=opt2, scheduler=_schedule(opt2, 5))
    _assert_all_equal(_params(other), before)


def test_leftovers_are_ignored_and_cleaned(tmp_path: Path) -> None:
    good = _save(tmp_path, 10)
    root = tmp_path / CHECKPOINT_DIR
    tmp = root / ".tmp-step-00000020"  # a save killed before its rename
    tmp.mkdir()
    (tmp / "complete.json").write_text("{}")
    partial = root / "step-00000030"  # a final-looking dir without the completion marker
    partial.mkdir()
    (partial / "weights.safetensors").write_bytes(b"")
    (root / "notes.txt").write_text("not a checkpoint")

    assert find_latest(tmp_path) == good
    assert resolve_resume(tmp_path, "auto") == good
    with pytest.raises(ConfigError):
        resolve_resume(tmp_path, str(partial))
    with pytest.raises(ConfigError):
        resolve_resume(tmp_path, str(tmp))

    newer = _save(tmp_path, 40)
    assert not tmp.exists()
    assert find_latest(tmp_path) == newer


def test_crash_before_rename_keeps_previous(tmp_path: Path, monkeypatch: Any) -> None:
    import os

    good = _save(tmp_path, 1)
    real_replace = os.replace

    def crash(src: Any, dst: Any) -> None:
        if Path(src).name.startswith(".tmp-"):
            raise KeyboardInterrupt("killed at the commit point")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 2)
    monkeypatch.setattr(os, "replace", real_replace)
    assert (tmp_path / CHECKPOINT_DIR / ".tmp-step-00000002" / "complete.json").exists()
    assert find_latest(tmp_path) == good
    assert _save(tmp_path, 2) == find_latest(tmp_path)


def test_keep_last_prunes_oldest(tmp_path: Path) -> None:
    for step in range(1, 6):
        _save(tmp_path, step, keep_last=2)
    names = sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir())
    assert names == ["step-00000004", "step-00000005"]
    with pytest.raises(ValueError):
        _save(tmp_path, 6, keep_last=0)


def test_same_step_saved_again_replaces(tmp_path: Path) -> None:
    _save(tmp_path, 5, marker="first")
    path = _save(tmp_path, 5, marker="second")
    assert json.loads((path / "state.json").read_text())["marker"] == "second"
    assert sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()) == ["step-00000005"]


def test_resolve_resume(tmp_path: Path) -> None:
    assert resolve_resume(tmp_path, "auto") is None  # nothing yet: a fresh start
    assert resolve_resume(tmp_path, True) is None
    first = _save(tmp_path, 3)
    latest = _save(tmp_path, 12)
    assert resolve_resume(tmp_path, "auto") == latest
    assert resolve_resume(tmp_path, True) == latest
    assert resolve_resume(tmp_path, str(first)) == first
    copied = shutil.copytree(first, tmp_path / "best")  # a kept copy under another name
    assert resolve_resume(tmp_path, str(copied)) == copied
    assert resolve_resume(tmp_path, False) is None
    assert resolve_resume(tmp_path, None) is None
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as err:
        resolve_resume(tmp_path, str(missing))
    assert str(err.value) == (
        f"train.resume: {missing}: no such directory; give an intact checkpoint, or "
        "train.resume=auto (the newest intact one)"
    )
    with pytest.raises(ConfigError, match=r"complete\.json is missing"):
        resolve_resume(tmp_path, str(tmp_path))  # the run dir is not a checkpoint


def test_rng_states_restore(tmp_path: Path) -> None:
    model, opt = _tiny_mlp()
    sched = _schedule(opt, 5)
    _seed(3)
    torch.randn(5), random.random(), np.random.rand(), np.random.randn()  # a non-fresh state
    path = save_checkpoint(
        tmp_path, 1, model=model, optimizer=opt, scheduler=sched, state={}, keep_last=1
    )
    after_save = (torch.rand(4), random.random(), np.random.rand(3), np.random.randn())
    _seed(1234)
    load_checkpoint(path, model=model, optimizer=opt, scheduler=sched)
    after_load = (torch.rand(4), random.random(), np.random.rand(3), np.random.randn())
    assert torch.equal(after_save[0], after_load[0])
    assert after_save[1] == after_load[1]
    assert np.array_equal(after_save[2], after_load[2])
    assert after_save[3] == after_load[3]


def test_load_is_strict(tmp_path: Path) -> None:
    path = _save(tmp_path, 1)

    other = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.AdamW(other.parameters())
    with pytest.raises(ConfigError, match=r"do not match the model \(missing 2 .*unexpected 2"):
        load_checkpoint(path, model=other, optimizer=opt, scheduler=_schedule(opt, 5))

    model, opt = _tiny_mlp()
    model[0].weight.requires_grad_(False)  # a different method: fewer trainable parameters
    with pytest.raises(ConfigError, match=r"unexpected 1 \(e\.g\. 0\.weight\)"):
        load_checkpoint(path, model=model, optimizer=opt, scheduler=_schedule(opt, 5))

    model, opt = _tiny_mlp()
    model = model.to(torch.float64)
    with pytest.raises(ConfigError, match="float32 in the checkpoint but"):
        load_checkpoint(path, model=model, optimizer=opt, scheduler=_schedule(opt, 5))

    blob = bytearray((path / "optimizer.pt").read_bytes())
    blob[-20] ^= 0xFF
    (path / "optimizer.pt").write_bytes(bytes(blob))
    model, opt = _tiny_mlp()
    with pytest.raises(ConfigError, match=r"optimizer\.pt does not match its checksum") as err:
        load_checkpoint(path, model=model, optimizer=opt, scheduler=_schedule(opt, 5))
    assert "\n" not in str(err.value)


def test_deepspeed_checkpoints_are_refused_with_the_way_out(tmp_path: Path) -> None:
    class _DeepSpeed:  # what the checkpoint code reads of an Accelerator under DeepSpeed
        distributed_type = type("Kind", (), {"value": "DEEPSPEED"})()

    model, opt = _tiny_mlp()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with pytest.raises(ConfigError, match=r"train.save_every: .*DeepSpeed.*use FSDP"):
        save_checkpoint(
            tmp_path, 1, model=model, optimizer=opt, scheduler=sched,
            accelerator=_DeepSpeed(), state={}, keep_last=1,
        )  # fmt: skip
    assert not (tmp_path / CHECKPOINT_DIR).exists()


# ---------------------------------------------------------------------------------------------
# Damaged checkpoints (issue 14): verified before any of it is read; auto falls back.


def _tear(path: Path) -> None:
    """Cut a file in half, as a kill or a full disk while copying it would."""
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda c: _tear(c / "complete.json"), "complete.json is not valid JSON"),
        (lambda c: (c / "state.json").unlink(), "state.json is missing"),
        (lambda c: _tear(c / "weights.safetensors"), "weights.safetensors does not match"),
        (lambda c: (c / "complete.json").write_text('{"files": {}}'), "complete.json lists no"),
    ],
    ids=["torn-marker", "no-state", "torn-weights", "marker-without-files"],
)
def test_auto_resume_skips_a_damaged_checkpoint_with_a_notice(
    tmp_path: Path, damage: Any, reason: str
) -> None:
    good = _save(tmp_path, 2)
    broken = _save(tmp_path, 4)
    damage(broken)
    notes: list[str] = []
    assert resolve_resume(tmp_path, "auto", say=notes.append) == good
    assert len(notes) == 1 and "\n" not in notes[0]
    assert str(broken) in notes[0] and reason in notes[0] and str(good) in notes[0]


def test_a_damaged_checkpoint_given_by_path_is_a_one_line_error(tmp_path: Path) -> None:
    path = _save(tmp_path, 3)
    _tear(path / "complete.json")
    with pytest.raises(ConfigError) as err:
        resolve_resume(tmp_path, str(path))
    message = str(err.value)
    assert message.startswith(f"train.resume: {path}: complete.json is not valid JSON")
    assert "train.resume=auto" in message and "\n" not in message
    model, opt = _tiny_mlp()
    with pytest.raises(ConfigError, match=r"complete\.json is not valid JSON"):
        load_checkpoint(path, model=model, optimizer=opt, scheduler=_schedule(opt, 5))


def test_every_checkpoint_damaged_resumes_nothing_and_says_why(tmp_path: Path) -> None:
    for step in (2, 4):
        (_save(tmp_path, step) / "state.json").unlink()
    notes: list[str] = []
    assert resolve_resume(tmp_path, "auto", say=notes.append) is None
    assert len(notes) == 2 and all("state.json is missing" in n for n in notes)
    assert "step-00000004" in notes[0] and "step-00000002" in notes[1]  # newest first


def test_no_checkpoint_says_the_run_starts_fresh(tmp_path: Path) -> None:
    notes: list[str] = []
    assert resolve_resume(tmp_path, "auto", say=notes.append) is None
    assert notes == [f"train.resume: no checkpoint in {tmp_path / CHECKPOINT_DIR}; starting fresh"]
    assert resolve_resume(tmp_path, False, say=notes.append) is None
    assert len(notes) == 1  # resume not asked for: nothing to say
