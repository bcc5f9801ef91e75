"""The Chat tab loads a base model plus adapters the way ``tunesmith chat --adapter`` does and
answers like the inference engine with the same adapter; a bad adapter is a one-line note."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunesmith.board.chat import chat_turn
from tunesmith.board.state import Board

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sharp_and_adapters(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> dict:
    """The tiny Qwen2 with scaled-up matrices (its answers vary token to token), two random
    non-zero LoRA adapters on it, and a run directory holding the first one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("board-chat")
    base = root / "sharp"
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(6)
    model.save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_qwen2).save_pretrained(base)
    out: dict[str, Path] = {"base": base}
    for seed, name in ((1, "alpha"), (2, "beta")):
        torch.manual_seed(seed)
        lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora).save_pretrained(
            root / name
        )
        out[name] = root / name
    run = root / "runs" / "lora-run"
    (run / "adapter").mkdir(parents=True)
    for f in out["alpha"].iterdir():
        (run / "adapter" / f.name).write_bytes(f.read_bytes())
    cfg = {"model": {"name": str(base)}, "data": {"datasets": [{"path": "builtin:identity"}]}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    out["run"] = run
    return out


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    b = Board(tmp_path, tmp_path / "runs", threads=1)
    yield b
    b.close()


def _turn(board: Board, model: str, adapters: str, use: str = "") -> tuple[list[Any], str]:
    """The last ``(history, note)`` of one sampled turn (seeded), and the first note."""
    steps = list(
        chat_turn(board, model, adapters, use, "Tell me a story", [], "", 12, 0.9, 1.0, 7, None)
    )
    notes = [n for _, _, n in steps if n is not None]
    return steps[-1][0], notes[-1]


def _engine_answer(model: Path, adapter: Path | None, name: str | None = None) -> str:
    from tunesmith.infer.engine import Engine, GenParams

    eng = Engine.load(str(model), adapter=None if adapter is None else str(adapter), threads=1)
    try:
        params = GenParams(max_new_tokens=12, temperature=0.9, top_p=1.0, seed=7).check()
        msgs = [{"role": "user", "content": "Tell me a story"}]
        if eng.system_prompt:
            msgs.insert(0, {"role": "system", "content": eng.system_prompt})
        return "".join(eng.stream(msgs, params, adapter=name)).strip()
    finally:
        eng.close()


def test_chat_with_base_plus_adapter_answers_like_the_engine(
    board: Board, sharp_and_adapters: dict
) -> None:
    d = sharp_and_adapters
    history, note = _turn(board, str(d["base"]), str(d["alpha"]))
    assert note == "template: the tokenizer's own"
    assert [m["role"] for m in history] == ["user", "assistant"]
    with_alpha = history[-1]["content"]
    assert with_alpha and with_alpha == _engine_answer(d["base"], d["alpha"])
    plain, _ = _turn(board, str(d["base"]), "")
    assert plain[-1]["content"] == _engine_answer(d["base"], None) != with_alpha

    # a run directory stands for its adapter/; a second, named adapter answers when asked for
    two = f"{d['run']}\nb={d['beta']}"
    first, _ = _turn(board, str(d["base"]), two)
    assert first[-1]["content"] == with_alpha
    beta, _ = _turn(board, str(d["base"]), two, use="b")
    assert beta[-1]["content"] == _engine_answer(d["base"], d["beta"]) != with_alpha
    eng = board.engine(str(d["base"]), two)
    assert eng.model_names() == ["lora-run", str(d["base"]), "b"]


def test_a_bad_adapter_is_a_one_line_note_and_the_history_is_kept(
    board: Board, sharp_and_adapters: dict, tmp_path: Path
) -> None:
    d = sharp_and_adapters
    old = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    (tmp_path / "empty").mkdir()
    cases = {
        "missing/adapter": "error: `adapter missing/adapter: not found; give a LoRA adapter "
        "folder or a run directory with adapter/`",
        "empty": "error: `adapter empty: no adapter_config.json in the folder; give a LoRA "
        "adapter folder or a run directory with adapter/`",
    }
    for given, expected in cases.items():
        steps = list(
            chat_turn(board, str(d["base"]), given, "", "hey", old, "", 4, 0, 1, None, None)
        )
        assert steps == [(old, "hey", expected)]
    steps = list(
        chat_turn(
            board, str(d["base"]), str(d["alpha"]), "gamma", "hey", old, "", 4, 0, 1, None, None
        )
    )
    assert len(steps) == 1 and steps[0][0] == old
    assert steps[0][2].startswith("error: `model 'gamma' not found; available: ")
