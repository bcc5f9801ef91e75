"""Reward models: a scalar head on the language model, Bradley-Terry loss, save, load and score.

A reward model is transformers' ``AutoModelForSequenceClassification`` with one label: the
pretrained decoder plus a linear ``score`` head (new, seeded) read at the last non-padding token.
``recipes/rm.py`` trains it on preference pairs; the result is saved as a plain Hugging Face
folder (``<run>/model``, LoRA merged) so ``AutoModelForSequenceClassification.from_pretrained``
loads it without tunesmith, and GRPO's ``kind: model`` reward scores completions with it here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError

HEAD = "score"
"""The scalar head's module name in transformers' sequence-classification models."""


def load_for_training(cfg: Any, pad_token_id: int) -> Any:
    """The model of ``model.name`` with a new one-output ``score`` head (stage rm)."""
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification

    from tunesmith.model.loader import pick_dtype, resolve_model_path
    from tunesmith.quiet import quiet_transformers

    quiet_transformers()  # "score.weight newly initialised" is the point here, not a warning
    m = cfg.model
    path = resolve_model_path(m.name, what="model.name", revision=m.revision)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=1,
            pad_token_id=pad_token_id,
            dtype=pick_dtype(m.dtype),
            attn_implementation=m.attn_implementation,
            trust_remote_code=m.trust_remote_code,
            revision=m.revision,
        )
    except (OSError, ValueError, KeyError, ImportError, SafetensorError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"model.name {m.name!r}: cannot load it as a reward model ({first}); "
            "give a decoder language model"
        ) from None
    model.config.use_cache = False
    return model


def apply_rm_method(model: Any, method: Any) -> Any:
    """``method`` on a reward model: the head always trains in full.

    LoRA goes through peft's sequence-classification task (the ``score`` head is a module to
    save beside the adapters); full and freeze tuning as for every stage.
    """
    from tunesmith.model.adapters import apply_method

    if method.type != "lora":
        model = apply_method(model, method)
        getattr(model, HEAD).requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    lc = method.lora
    config = LoraConfig(
        r=lc.rank,
        lora_alpha=lc.alpha,
        lora_dropout=lc.dropout,
        target_modules=lc.targets,
        modules_to_save=sorted({HEAD, *(lc.modules_to_save or [])}),
        use_dora=lc.use_dora,
        use_rslora=lc.use_rslora,
        init_lora_weights={"default": True, "gaussian": "gaussian"}[lc.init],
        task_type="SEQ_CLS",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"method.lora.targets {lc.targets!r}: {first}") from None
    from tunesmith.model.fused_lora import fuse_lora

    fuse_lora(peft_model)
    return peft_model


def scores(model: Any, input_ids: Any, attention_mask: Any) -> Any:
    """``[B]`` scalar rewards (the head at each row's last non-padding token)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out.logits[:, 0].float()


def bradley_terry(chosen: Any, rejected: Any, center_coef: float = 0.0) -> Any:
    """Per-pair ``-log sigmoid(r_chosen - r_rejected)`` (+ ``center_coef * (r_c + r_r)^2``)."""
    import torch.nn.functional as F

    losses = -F.logsigmoid(chosen - rejected)
    if center_coef:
        losses = losses + center_coef * (chosen + rejected) ** 2
    return losses


def save_merged(model: Any, tokenizer: Any, run_dir: Path) -> Path:
    """Write ``<run>/model``: the LoRA merged into the weights (a reward model's head
    included) and the tokenizer; the training model is left as it was.

    Stage rm saves this way so the folder is a standard sequence-classification checkpoint (no
    peft needed to load it); a GRPO run with a warm-up, because its adapter belongs to the
    warmed-up weights rather than to ``model.name``.
    """
    import copy

    from tunesmith.atomic import replace_dir
    from tunesmith.model.attention import restore_sdpa

    target = run_dir / "model"
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    model.config.use_cache = True
    restore_sdpa(model)
    with replace_dir(target, ".model.") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    from tunesmith.export.card import write_run_card

    write_run_card(run_dir)
    return target


def reward_model_dir(path: str, where: str) -> Path:
    """The model folder of a stage-rm run directory (or ``path`` itself when it is one)."""
    p = Path(path)
    if (p / "model" / "config.json").is_file():
        return p / "model"
    if (p / "config.json").is_file():
        return p
    raise ConfigError(
        f"{where}: {path!r} is not a reward model; give the run directory of a stage rm run "
        "(with model/ inside) or a sequence-classification model folder"
    )


@dataclass
class RewardModel:
    """A loaded reward model and its tokenizer (with the chat template it was trained with)."""

    model: Any
    tokenizer: Any
    device: Any
    batch_size: int = 16

    @classmethod
    def load(cls, path: str, where: str, device: Any = "cpu") -> RewardModel:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from tunesmith.quiet import quiet_transformers

        quiet_transformers()
        folder = reward_model_dir(path, where)
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        if model.config.num_labels != 1:
            raise ConfigError(
                f"{where}: {folder} has {model.config.num_labels} labels; a reward model has one"
            )
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model.eval().requires_grad_(False).to(device)
        return cls(model, tokenizer, device)

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """The reward of each rendered conversation text."""
        import torch

        out: list[float] = []
        pad = self.model.config.pad_token_id
        for i in range(0, len(texts), self.batch_size):
            enc = [
                self.tokenizer(t, add_special_tokens=False)["input_ids"]
                for t in texts[i : i + self.batch_size]
            ]
            width = max(len(e) for e in enc)
            ids = torch.tensor([e + [pad] * (width - len(e)) for e in enc], device=self.device)
            mask = torch.tensor(
                [[1] * len(e) + [0] * (width - len(e)) for e in enc], device=self.device
            )
            with torch.no_grad():
                out += scores(self.model, ids, mask).tolist()
        return out

    def score(self, prompts: Sequence[list[dict[str, Any]]], completions: Sequence[str]) -> list:
        """Rewards of each ``prompt + assistant completion``, rendered with the model's template."""
        texts = [
            self.tokenizer.apply_chat_template(
                [*p, {"role": "assistant", "content": c}], tokenize=False
            )
            for p, c in zip(prompts, completions)
        ]
        return self.score_texts(texts)


def model_reward(path: str, where: str, device: Any = "cpu") -> Any:
    """A GRPO reward function scoring completions with the reward model at ``path``."""
    rm = RewardModel.load(path, where, device)

    def reward(prompts: Any, completions: Sequence[str], samples: Any, lengths: Any) -> list[float]:
        return rm.score(prompts, completions)

    return reward
