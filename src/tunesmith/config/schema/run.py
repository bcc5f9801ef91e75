"""``RunConfig``: the whole run, and the rules that span sections.

Settings the chosen ``method.stage`` (or method) does not honour are errors, each with its own
path (``stage_problems``), so ``tunesmith validate`` refuses what ``train`` would."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from tunesmith.config.schema.base import Section
from tunesmith.config.schema.data import DataConfig
from tunesmith.config.schema.eval import EvalConfig
from tunesmith.config.schema.method import (
    PREFERENCE_STAGES,
    RL_STAGES,
    VLM_STAGES,
    DistillConfig,
    GRPOConfig,
    MethodConfig,
    PreferenceConfig,
    RewardModelConfig,
)
from tunesmith.config.schema.model import ModelConfig
from tunesmith.config.schema.output import ExportConfig, OutputConfig, ServeConfig
from tunesmith.config.schema.serval import ServalConfig
from tunesmith.config.schema.train import TrainConfig


class RunConfig(Section):
    """A whole run: everything `tunesmith train` needs."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    serval: ServalConfig | None = Field(
        None, description="LLM <-> vertical-model co-training (`tunesmith serval`)."
    )

    @model_validator(mode="after")
    def _eval_split(self) -> RunConfig:
        # data.val_size is the source of truth; eval.val_split is only another name for it.
        split = self.eval.val_split
        if split is not None:
            given = "val_size" in self.data.model_fields_set
            if given and self.data.val_size != split:
                raise rule_error(
                    [
                        (
                            ("eval", "val_split"),
                            split,
                            f"another name for data.val_size, which is {self.data.val_size!r}; "
                            "give one of them",
                        )
                    ]
                )
            self.data.val_size = split
            self.eval.val_split = None  # the resolved config holds the value once
        if self.eval.early_stopping_patience and not (self.data.val_size and self.eval.every):
            raise rule_error(
                [
                    (
                        ("eval", "early_stopping_patience"),
                        self.eval.early_stopping_patience,
                        "needs a validation split (data.val_size) and eval.every",
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _optim_method(self) -> RunConfig:
        # The projected / block-wise optimisers act on base weights; adapters have none to give.
        o, kind = self.train.optim, self.method.type
        need = {"badam": ("full",), "galore_adamw": ("full", "freeze")}
        need["galore_adamw_8bit"] = need["apollo_adamw"] = need["galore_adamw"]
        if o in need and kind not in need[o]:
            raise rule_error(
                [
                    (
                        ("train", "optim"),
                        o,
                        f"trains base weights (method.type {' or '.join(need[o])}); method.type "
                        f"is {kind}: use adamw, adamw_8bit or paged_adamw with adapters",
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _stage_settings(self) -> RunConfig:
        if self.method.stage in (*PREFERENCE_STAGES, *RL_STAGES):
            # Pairs are padded in data order: the resolved (and saved) config says so, rather
            # than carrying SFT's packing defaults that this stage would ignore.
            for name in ("packing", "group_by_length"):
                if name not in self.data.model_fields_set:
                    setattr(self.data, name, False)
        problems = stage_problems(self)
        if problems:
            raise rule_error(problems)
        return self


Problem = tuple[tuple[str | int, ...], Any, str]
"""A cross-field error: the dotted path (as a tuple), the value found there, what is wrong."""


def rule_error(problems: list[Problem]) -> ValidationError:
    """A ValidationError whose lines name each problem's own path (not the top level)."""
    return ValidationError.from_exception_data(
        "RunConfig",
        [
            InitErrorDetails(
                type=PydanticCustomError("stage_setting", "{text}", {"text": text}),
                loc=loc,
                input=value,
            )
            for loc, value, text in problems
        ],
    )


def stage_problems(cfg: RunConfig) -> list[Problem]:
    """Settings that the chosen ``method.stage`` does not honour: errors, not silently ignored.

    Every rule here reads the config alone, so ``tunesmith validate`` refuses what ``train``
    would. Default values are never refused (a stage that ignores a setting ignores its default
    too). What needs the model stays with the model code: the decoder-layer count of
    ``method.freeze``, 4-bit shapes (``model/adapters.py``), LoRA targets matching nothing, the
    tower's image tokens (``model/multimodal.py``), ``train.ce_impl`` on this device and model
    (``train/loop.py``).
    """
    stage, m, t, d = cfg.method.stage, cfg.method, cfg.train, cfg.data
    out: list[Problem] = []

    def bad(loc: tuple[str | int, ...], value: Any, text: str) -> None:
        out.append((loc, value, text))

    p, p0 = m.pref, PreferenceConfig()
    if stage not in PREFERENCE_STAGES:
        for name in PreferenceConfig.model_fields:
            if getattr(p, name) != getattr(p0, name):
                bad(
                    ("method", "pref", name),
                    getattr(p, name),
                    f"applies to the preference stages ({', '.join(PREFERENCE_STAGES)}); "
                    f"stage is {stage}; remove it",
                )
    else:
        if p.loss_type != "sigmoid" and stage != "dpo":
            bad(
                ("method", "pref", "loss_type"),
                p.loss_type,
                f"{p.loss_type!r} is a DPO variant; stage is {stage}; remove it or use stage dpo",
            )
        if p.label_smoothing and (stage in ("orpo", "kto") or p.loss_type != "sigmoid"):
            bad(
                ("method", "pref", "label_smoothing"),
                p.label_smoothing,
                "applies to DPO (sigmoid) and SimPO only; set it to 0",
            )
        if p.pref_ftx and stage == "orpo":
            bad(
                ("method", "pref", "pref_ftx"),
                p.pref_ftx,
                "ORPO already trains on the chosen replies; set it to 0",
            )
        if p.gamma != p0.gamma and stage != "simpo":
            bad(("method", "pref", "gamma"), p.gamma, f"the SimPO margin; stage is {stage}")
        for name in ("desirable_weight", "undesirable_weight"):
            if getattr(p, name) != getattr(p0, name) and stage != "kto":
                bad(("method", "pref", name), getattr(p, name), f"a KTO weight; stage is {stage}")
        if p.precompute_ref and stage in ("orpo", "simpo"):
            bad(
                ("method", "pref", "precompute_ref"),
                True,
                f"{stage.upper()} uses no reference model; set it to false",
            )
        # What the preference recipe does not do: pairs are padded, in data order (packing and
        # length grouping are on by default for SFT, so only an explicit `true` is refused),
        # labels cover the replies only, and the step is pref_step's own full-logits forward in
        # whole micro-batches.
        for name, why in (
            ("packing", "preference pairs are padded, never packed"),
            ("group_by_length", "preference pairs are batched in data order"),
        ):
            if name in d.model_fields_set and getattr(d, name):
                bad(("data", name), True, f"{why}; remove it or set it to false")
        for name, why in (
            ("train_on_prompt", "preference stages train on the replies only"),
            ("mask_history", "a pair's prompt is never trained"),
        ):
            if getattr(d, name):
                bad(("data", name), True, f"{why}; set it to false")
        if d.loss_weights:
            bad(("data", "loss_weights"), d.loss_weights, "not used by preference stages")
        for i, ds in enumerate(d.datasets):
            if ds.loss_weights:
                bad(
                    ("data", "datasets", i, "loss_weights"),
                    ds.loss_weights,
                    "not used by preference stages",
                )
        if t.ce_impl != "auto":
            bad(
                ("train", "ce_impl"),
                t.ce_impl,
                "preference stages score full logits (the SFT loss paths do not apply); use auto",
            )
    if stage in PREFERENCE_STAGES or stage in VLM_STAGES:
        kind = "preference" if stage in PREFERENCE_STAGES else "vlm"
        if t.compile:
            bad(("train", "compile"), True, f"the {kind} recipe does not compile; set it to false")
        if isinstance(t.pass_tokens, int):
            why = "micro-batches with images" if kind == "vlm" else "preference micro-batches"
            bad(
                ("train", "pass_tokens"),
                t.pass_tokens,
                f"{why} are never split into passes; use auto or null",
            )

    v = cfg.model.vision
    if stage not in VLM_STAGES:
        if v is not None:
            bad(("model", "vision"), v.model_dump(), f"applies to the vlm stages; stage is {stage}")
    elif stage == "vlm_pretrain":
        if t.gradient_checkpointing:
            bad(
                ("train", "gradient_checkpointing"),
                True,
                "vlm_pretrain trains no LLM layer; set it to false",
            )
        if m.type != "lora":  # the default: vlm_pretrain ignores method.type
            bad(("method", "type"), m.type, "vlm_pretrain trains the projector only; remove it")
        if v is not None and v.train_vision != "frozen":
            bad(
                ("model", "vision", "train_vision"),
                v.train_vision,
                "vlm_pretrain trains the projector only; use it in vlm_sft",
            )
        if v is not None and not v.train_projector:
            bad(
                ("model", "vision", "train_projector"),
                False,
                "vlm_pretrain trains the projector (only); remove it",
            )
    else:  # vlm_sft (apply_vlm_method in model/multimodal.py checks the same when called alone)
        train_vision = v.train_vision if v is not None else "frozen"
        if m.type not in ("full", "lora"):
            bad(("method", "type"), m.type, "stage vlm_sft trains the LLM with 'full' or 'lora'")
        elif m.type == "full" and train_vision == "lora":
            bad(
                ("model", "vision", "train_vision"),
                train_vision,
                "'lora' needs method.type 'lora'; use 'full' or 'frozen'",
            )
        if m.lora.init == "pissa" and (m.type == "lora" or train_vision == "lora"):
            bad(("method", "lora", "init"), "pissa", "not supported by the vlm stages; use default")
    out.extend(rl_problems(cfg))
    out.extend(distill_problems(cfg))
    if cfg.serval is not None and stage != "sft":  # serval back-tunes with the SFT recipe
        bad(("method", "stage"), stage, "serval back-tunes with stage sft; use sft")
    return out


def rl_problems(cfg: RunConfig) -> list[Problem]:
    """The rules of stages rm and grpo (issue 19)."""
    stage, m, t, d = cfg.method.stage, cfg.method, cfg.train, cfg.data
    out: list[Problem] = []
    for name, owner, section in (("rm", "rm", RewardModelConfig), ("grpo", "grpo", GRPOConfig)):
        if stage != owner and getattr(m, name) != section():
            out.append(
                (
                    ("method", name),
                    getattr(m, name).model_dump(),
                    f"applies to stage {owner}; stage is {stage}; remove it",
                )
            )
    if stage not in RL_STAGES:
        return out
    for name in ("packing", "group_by_length"):
        if name in d.model_fields_set and getattr(d, name):
            out.append((("data", name), True, f"stage {stage} does not pack or group; remove it"))
    for name in ("train_on_prompt", "mask_history"):
        if getattr(d, name):
            out.append((("data", name), True, f"not used by stage {stage}; set it to false"))
    if t.ce_impl != "auto":
        out.append((("train", "ce_impl"), t.ce_impl, f"stage {stage} scores full logits; use auto"))
    if t.compile:
        out.append((("train", "compile"), True, f"stage {stage} does not compile; set it to false"))
    if isinstance(t.pass_tokens, int):
        out.append((("train", "pass_tokens"), t.pass_tokens, "never split into passes; use auto"))
    if m.type == "lora" and m.lora.init == "pissa":
        out.append((("method", "lora", "init"), "pissa", f"not supported by stage {stage}"))
    if stage == "rm" and m.type == "qlora":
        out.append((("method", "type"), "qlora", "stage rm trains 'lora', 'full' or 'freeze'"))
    if stage == "grpo":
        g = m.grpo
        for i, r in enumerate(g.rewards):
            need = {"regex": "pattern", "function": "function", "model": "path", "endpoint": "url"}
            field = need.get(r.kind)
            if field and not getattr(r, field):
                out.append(
                    (
                        ("method", "grpo", "rewards", i, field),
                        None,
                        f"reward kind {r.kind!r} needs {field}",
                    )
                )
            if r.kind != "numeric" and r.scale is not None:
                out.append(
                    (
                        ("method", "grpo", "rewards", i, "scale"),
                        r.scale,
                        "only kind 'numeric' uses scale; drop it or set kind numeric",
                    )
                )
            if r.kind == "endpoint" and not r.model:
                out.append(
                    (
                        ("method", "grpo", "rewards", i, "model"),
                        None,
                        "reward kind 'endpoint' needs model",
                    )
                )
            if r.kind == "function" and r.function and ":" not in r.function:
                out.append(
                    (
                        ("method", "grpo", "rewards", i, "function"),
                        r.function,
                        "give it as module:function",
                    )
                )
        if g.warmup_steps and m.type == "qlora":
            out.append(
                (
                    ("method", "grpo", "warmup_steps"),
                    g.warmup_steps,
                    "the warm-up fine-tunes the full weights, which qlora keeps in 4 bits; "
                    "set it to 0 and start from an sft run's model",
                )
            )
        names = [r.name or r.kind for r in g.rewards]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            out.append((("method", "grpo", "rewards"), dup, "two rewards share a name; set name"))
    return out


def distill_problems(cfg: RunConfig) -> list[Problem]:
    """The rules of ``method.distill`` and of stage ``distill`` (part of ``stage_problems``)."""
    stage, k, t = cfg.method.stage, cfg.method.distill, cfg.train
    k0, out = DistillConfig(), []
    if stage != "distill":
        for name in DistillConfig.model_fields:
            if getattr(k, name) != getattr(k0, name):
                out.append(
                    (
                        ("method", "distill", name),
                        getattr(k, name),
                        f"applies to stage distill; stage is {stage}; remove it",
                    )
                )
        return out
    if not k.teacher:
        out.append(
            (
                ("method", "distill", "teacher"),
                None,
                "stage distill needs a teacher: a run directory or model folder "
                "with the student's tokenizer",
            )
        )
    if k.beta != k0.beta and k.kind != "jsd":
        out.append(
            (("method", "distill", "beta"), k.beta, f"weights the jsd mix; kind is {k.kind}")
        )
    if t.ce_impl in ("chunked", "liger"):
        out.append(
            (
                ("train", "ce_impl"),
                t.ce_impl,
                "distillation compares the student's logits with the teacher's; "
                "use auto, logits or full",
            )
        )
    if t.compile:
        out.append(
            (("train", "compile"), True, "the distill recipe does not compile; set it to false")
        )
    return out
