"""Reward functions for GRPO, built from ``method.grpo.rewards`` and combined with weights.

Every reward takes ``(prompts, completions, samples, lengths)`` for a batch (the prompt's
messages, the completion text, the prompt's sample dict with its ``answer``, the completion's
token count) and returns one float per completion:

* ``exact``: 1 when the completion, stripped and case-folded, equals the sample's ``answer``;
* ``numeric``: partial credit for a number: ``1 / (1 + |pred - answer| / scale)`` where ``pred``
  is the first number in the completion (0 when it has none; an answer that is not a number
  scores as ``exact``), so a near miss still beats a wild guess and a group of wrong answers
  still tells GRPO which were closer;
* ``regex``: 1 when the completion matches ``pattern`` from its start (``re.match``);
* ``length``: ``-(tokens over target) / (max_new_tokens - target)``, 0 up to ``target``;
* ``function``: ``module:function`` called per completion as ``fn(prompt, completion, sample)``;
* ``model``: the scalar score of a reward model trained with ``stage: rm``;
* ``endpoint``: an OpenAI-compatible model asked to grade the answer 0-10 (read as 0-1).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import ConfigError

Messages = list[dict[str, Any]]
RewardFn = Callable[
    [Sequence[Messages], Sequence[str], Sequence[dict[str, Any]], Sequence[int]], list[float]
]


@dataclass
class Reward:
    """One named, weighted reward function."""

    name: str
    weight: float
    fn: RewardFn


def exact_reward(
    prompts: Any, completions: Sequence[str], samples: Any, lengths: Any
) -> list[float]:
    """1.0 when the completion equals the sample's ``answer`` (stripped, case-folded)."""
    out = []
    for text, sample in zip(completions, samples):
        answer = sample.get("answer")
        if answer is None:
            raise ConfigError(
                f"method.grpo.rewards: kind 'exact' needs an answer; "
                f"{sample.get('where', 'a prompt')} has none (give the data an answer, or use "
                "another reward)"
            )
        out.append(float(text.strip().casefold() == str(answer).strip().casefold()))
    return out


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


def _as_number(text: str) -> float | None:
    """The whole ``text`` read as a number (``None`` when it is not one)."""
    m = _NUMBER.fullmatch(text.strip())
    return float(m.group()) if m else None


def numeric_reward(scale: float = 1.0) -> RewardFn:
    """``1 / (1 + |pred - answer| / scale)``: ``pred`` is the completion's first number (none:
    0); a non-numeric answer (``odd``) scores as ``exact``."""

    def reward(prompts: Any, completions: Sequence[str], samples: Any, lengths: Any) -> list[float]:
        exact = exact_reward(prompts, completions, samples, lengths)  # also checks the answers
        out = []
        for text, sample, hit in zip(completions, samples, exact):
            answer = _as_number(str(sample["answer"]))
            if answer is None:
                out.append(hit)
                continue
            m = _NUMBER.search(text)
            out.append(0.0 if m is None else 1.0 / (1.0 + abs(float(m.group()) - answer) / scale))
        return out

    return reward


def regex_reward(pattern: str, where: str) -> RewardFn:
    """1.0 when the completion matches ``pattern`` from its start."""
    try:
        rx = re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise ConfigError(f"{where}.pattern {pattern!r}: {exc}") from None

    def reward(prompts: Any, completions: Sequence[str], samples: Any, lengths: Any) -> list[float]:
        return [float(rx.match(t.strip()) is not None) for t in completions]

    return reward


def length_reward(target: int, max_new_tokens: int) -> RewardFn:
    """0 up to ``target`` tokens, then falling linearly to -1 at ``max_new_tokens``."""
    span = max(1, max_new_tokens - target)

    def reward(prompts: Any, completions: Any, samples: Any, lengths: Sequence[int]) -> list[float]:
        return [-max(0, n - target) / span for n in lengths]

    return reward


def import_function(spec: str, where: str) -> Callable[..., Any]:
    """The callable named by ``module:function``."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{where}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH?"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{where}: {module_name!r} has no function {attr!r}")
    return fn


def function_reward(spec: str, where: str) -> RewardFn:
    """A user function ``fn(prompt, completion, sample) -> float`` applied to each completion."""
    fn = import_function(spec, where)

    def reward(
        prompts: Sequence[Messages], completions: Sequence[str], samples: Any, lengths: Any
    ) -> list[float]:
        out = []
        for p, c, s in zip(prompts, completions, samples):
            value = fn(p, c, s)
            try:
                out.append(float(value))
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: {spec} returned {value!r}, not a number") from None
        return out

    return reward


def build_rewards(
    specs: Sequence[Any], *, max_new_tokens: int, device: Any = "cpu"
) -> list[Reward]:
    """``Reward`` objects for ``method.grpo.rewards`` (errors name the config path);
    reward models are loaded onto ``device``."""
    out = []
    for i, spec in enumerate(specs):
        where = f"method.grpo.rewards.{i}"
        if spec.kind == "exact":
            fn: RewardFn = exact_reward
        elif spec.kind == "numeric":
            fn = numeric_reward(spec.scale or 1.0)
        elif spec.kind == "regex":
            fn = regex_reward(spec.pattern, where)
        elif spec.kind == "length":
            fn = length_reward(spec.target or 0, max_new_tokens)
        elif spec.kind == "function":
            fn = function_reward(spec.function, f"{where}.function")
        elif spec.kind == "model":
            from tunesmith.train.rl.reward_model import model_reward

            fn = model_reward(spec.path, f"{where}.path", device)
        else:
            from tunesmith.train.rl.endpoint import endpoint_reward

            fn = endpoint_reward(spec, where)
        out.append(Reward(spec.name or spec.kind, spec.weight, fn))
    return out


def score(
    rewards: Sequence[Reward],
    prompts: Sequence[Messages],
    completions: Sequence[str],
    samples: Sequence[dict[str, Any]],
    lengths: Sequence[int],
) -> tuple[list[float], dict[str, list[float]]]:
    """The weighted total per completion, and each reward's own values by name."""
    each = {}
    for r in rewards:
        values = r.fn(prompts, completions, samples, lengths)
        if len(values) != len(completions):
            raise ConfigError(
                f"reward {r.name!r} gave {len(values)} values for {len(completions)} completions"
            )
        each[r.name] = values
    total = [sum(r.weight * each[r.name][k] for r in rewards) for k in range(len(completions))]
    return total, each
