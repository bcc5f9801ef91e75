"""Every ``train.optim`` choice trains the tiny Qwen2 on CPU: the loss falls and exactly the
parameters the optimiser is meant to move do move (bitsandbytes, GaLore, APOLLO, BAdam)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.config.load import load_config
from tunesmith.errors import ConfigError
from tunesmith.model.adapters import apply_method, decoder_layers
from tunesmith.model.loader import load_model
from tunesmith.train.optim import lowrank_targets, make_optimizer, make_scheduler

pytestmark = pytest.mark.usefixtures("one_torch_thread")
STEPS = 8


def config(optim: str, method: str = "full", **args: Any) -> Any:
    tree: dict[str, Any] = {
        "data": {"datasets": [{"path": "builtin:identity"}]},
        "method": {"type": method},
        "train": {"optim": optim, "lr": 3e-3, "warmup_ratio": 0, "optim_args": args},
    }
    if method == "freeze":
        tree["method"]["freeze"] = {"trainable_layers": 1}
    return load_config(tree=tree)


def train(tiny: Path, cfg: Any) -> tuple[Any, dict[str, torch.Tensor], list[float], Any]:
    torch.manual_seed(0)
    model = apply_method(load_model(str(tiny), dtype="float32"), cfg.method)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, STEPS)
    ids = torch.randint(10, 4000, (2, 24), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(STEPS):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(float(loss.detach()))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return model, before, losses, opt


def moved(model: Any, before: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("optim", ["adamw", "adamw_8bit", "paged_adamw", "paged_adamw_8bit"])
def test_bitsandbytes_optimisers_train_lora(tiny_qwen2: Path, optim: str) -> None:
    model, before, losses, opt = train(tiny_qwen2, config(optim, "lora"))
    assert losses[-1] < losses[0] - 0.05, losses
    changed = moved(model, before)
    assert changed and all("lora_" in k for k in changed), sorted(changed)[:5]
    assert {k for k in changed if "lora_B" in k}  # B starts at zero: it must have moved
    if optim.endswith("8bit"):
        state = [s for s in opt.state.values() if "state1" in s]
        # 8-bit moments for the tensors bitsandbytes quantises (>= 4096 elements)
        assert any(s["state1"].dtype == torch.uint8 for s in state)


@pytest.mark.parametrize("optim", ["galore_adamw", "apollo_adamw"])
def test_lowrank_optimisers_train_full(tiny_qwen2: Path, optim: str) -> None:
    cfg = config(optim, "full", rank=8, update_proj_gap=4)
    model, before, losses, opt = train(tiny_qwen2, cfg)
    assert losses[-1] < losses[0] - 0.05, losses
    assert moved(model, before) == set(before)  # full fine-tuning: every parameter moves
    targets = lowrank_targets(model)
    projected = [g for g in opt.param_groups if "rank" in g]
    assert {id(p) for g in projected for p in g["params"]} == targets
    assert all(g["rank"] == 8 for g in projected)
    layer0 = decoder_layers(model)[0][1]
    q = layer0.self_attn.q_proj.weight  # [256, 256]: state lives in the rank-8 projection
    exp_avg = opt.state[q]["exp_avg"]
    assert exp_avg.numel() == 8 * 256 and exp_avg.numel() < q.numel()


def test_galore_with_freeze_moves_only_the_trained_layer(tiny_qwen2: Path) -> None:
    model, before, losses, _ = train(tiny_qwen2, config("galore_adamw", "freeze", rank=8))
    assert losses[-1] < losses[0]
    last = decoder_layers(model)[-1][0]
    changed = moved(model, before)
    assert changed and all(k.startswith(last + ".") for k in changed)


def test_badam_trains_one_block_at_a_time(tiny_qwen2: Path) -> None:
    cfg = config("badam", "full", block_switch_every=4, block_switch_mode="ascending")
    model, before, losses, _ = train(tiny_qwen2, cfg)
    assert losses[-1] < losses[0]
    names = [n for n, _ in decoder_layers(model)]
    changed = moved(model, before)
    layers = {n for n in names for k in changed if k.startswith(n + ".")}
    # badam switches after steps 3 and 7 of 8: layers 0, 1, 2 took turns; layer 3, the
    # embeddings and the final norm never trained
    assert layers == set(names[:3])
    assert all(any(k.startswith(n + ".") for n in names[:3]) for k in changed)


def test_lowrank_and_block_optimisers_refuse_adapters() -> None:
    for optim in ("galore_adamw", "apollo_adamw", "badam"):
        with pytest.raises(ConfigError, match=r"train\.optim: trains base weights"):
            config(optim, "lora")
    with pytest.raises(ConfigError, match=r"method\.type full"):
        config("badam", "freeze")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_galore_8bit_needs_cuda(tiny_qwen2: Path) -> None:
    model = load_model(str(tiny_qwen2), dtype="float32")
    cfg = config("galore_adamw_8bit", "full")
    with pytest.raises(ConfigError, match="needs CUDA"):
        make_optimizer(apply_method(model, cfg.method), cfg)
