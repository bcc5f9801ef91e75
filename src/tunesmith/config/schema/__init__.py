"""The run configuration: one pydantic model, parsed once, passed everywhere.

Sections follow the pipeline, one module each: ``model`` -> ``data`` -> ``method`` -> ``train``
-> ``eval`` -> ``output``, then ``export`` / ``serve`` (``output.py``: the defaults of the commands
run after training) and ``serval``; ``run.py`` holds ``RunConfig``, the whole run. Unknown keys
are errors (``extra="forbid"``, ``base.py``); a cross-field check lives on the section that owns
it, and the rules that span sections (what a ``method.stage`` does not honour) in ``run.py``.
Everything is importable from here: ``from tunesmith.config.schema import RunConfig``.
"""

from __future__ import annotations

from tunesmith.config.schema.base import LossWeights, Section, unknown_name
from tunesmith.config.schema.data import AugmentConfig, DataConfig, DatasetConfig, Identity
from tunesmith.config.schema.eval import (
    PERTURBATIONS,
    ConsistencySpec,
    EvalConfig,
    EvalTaskSpec,
    GenerationSpec,
    IdentitySpec,
    JudgeSpec,
    MultipleChoiceSpec,
    PerplexitySpec,
    TaskName,
)
from tunesmith.config.schema.method import (
    PREFERENCE_STAGES,
    RL_STAGES,
    VLM_STAGES,
    DistillConfig,
    FreezeConfig,
    GRPOConfig,
    LoraConfig,
    MethodConfig,
    PreferenceConfig,
    QuantConfig,
    RewardModelConfig,
    RewardSpec,
)
from tunesmith.config.schema.model import ModelConfig, VisionConfig
from tunesmith.config.schema.output import ExportConfig, OutputConfig, ServeConfig
from tunesmith.config.schema.run import (
    Problem,
    RunConfig,
    distill_problems,
    rl_problems,
    rule_error,
    stage_problems,
)
from tunesmith.config.schema.serval import (
    ServalBacktuneConfig,
    ServalConfig,
    ServalFTConfig,
    ServalNoiseConfig,
    ServalVerticalConfig,
)
from tunesmith.config.schema.train import OptimArgs, TrainConfig

__all__ = [
    "PERTURBATIONS",
    "PREFERENCE_STAGES",
    "RL_STAGES",
    "VLM_STAGES",
    "AugmentConfig",
    "ConsistencySpec",
    "DataConfig",
    "DatasetConfig",
    "DistillConfig",
    "EvalConfig",
    "EvalTaskSpec",
    "ExportConfig",
    "FreezeConfig",
    "GRPOConfig",
    "GenerationSpec",
    "Identity",
    "IdentitySpec",
    "JudgeSpec",
    "LoraConfig",
    "LossWeights",
    "MethodConfig",
    "ModelConfig",
    "MultipleChoiceSpec",
    "OptimArgs",
    "OutputConfig",
    "PerplexitySpec",
    "PreferenceConfig",
    "Problem",
    "QuantConfig",
    "RewardModelConfig",
    "RewardSpec",
    "RunConfig",
    "Section",
    "ServalBacktuneConfig",
    "ServalConfig",
    "ServalFTConfig",
    "ServalNoiseConfig",
    "ServalVerticalConfig",
    "ServeConfig",
    "TaskName",
    "TrainConfig",
    "VisionConfig",
    "distill_problems",
    "rl_problems",
    "rule_error",
    "stage_problems",
    "unknown_name",
]
