"""One GRPO optimiser step: generate G completions per prompt, score, normalise, optimise.

The step's prompts arrive as micro-batches (``{"prompts": [...]}``) from the shared batch stream,
so resume, checkpoints and the loop are SFT's. Generation runs on the policy itself through the
inference engine; the reference (when ``beta > 0``) is the policy with its adapters disabled, or a
frozen copy for full tuning. The loss of a step is divided by the whole step's completions
(sequence level) or completion tokens (token level), over every micro-batch and process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunesmith.train.loop import StepStats, optimizer_step
from tunesmith.train.rl.advantages import group_advantages
from tunesmith.train.rl.loss import grpo_loss, token_logps
from tunesmith.train.rl.rewards import Reward, score
from tunesmith.train.rl.rollout import Rollout, generate, row_seed


def pad_rows(
    prompts: Sequence[list[int]], completions: Sequence[list[int]], pad: int
) -> dict[str, torch.Tensor]:
    """``prompt (left-padded) + completion (right-padded)`` rows, their masks."""
    lp = max(len(p) for p in prompts)
    lc = max(len(c) for c in completions)
    ids, attn, cmask = [], [], []
    for p, c in zip(prompts, completions):
        ids.append([pad] * (lp - len(p)) + p + c + [pad] * (lc - len(c)))
        attn.append([0] * (lp - len(p)) + [1] * (len(p) + len(c)) + [0] * (lc - len(c)))
        cmask.append([1] * len(c) + [0] * (lc - len(c)))
    return {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.tensor(attn),
        "completion_mask": torch.tensor(cmask),
    }


@dataclass
class GRPOStep:
    """The loop's ``step_fn`` for stage grpo (keeps the step count for the generation seeds)."""

    cfg: Any
    accelerator: Any
    model: Any  # prepared policy
    optimizer: Any
    scheduler: Any
    tokenizer: Any
    rewards: list[Reward]
    step: int = 0
    frozen: Any = None  # the reference copy (full tuning with beta > 0)
    samples_path: Path | None = None
    _engine: Any = field(default=None, repr=False)

    @property
    def policy(self) -> Any:
        return self.accelerator.unwrap_model(self.model)

    def engine(self) -> Any:
        from tunesmith.infer.engine import Engine

        if self._engine is None:
            self._engine = Engine(self.policy, self.tokenizer)
        return self._engine

    def params(self, greedy: bool, seed: int | None) -> Any:
        from tunesmith.infer.sampling import GenParams

        g = self.cfg.method.grpo
        if greedy:
            return GenParams(max_new_tokens=g.max_new_tokens)
        return GenParams(
            max_new_tokens=g.max_new_tokens,
            temperature=g.temperature,
            top_p=g.top_p,
            top_k=g.top_k,
            seed=seed,
        )

    def rollouts(
        self,
        samples: Sequence[dict[str, Any]],
        *,
        greedy: bool,
        first_row: int = 0,
        seed_step: int | None = None,
    ) -> tuple[list[list[int]], list[Rollout]]:
        """Prompt ids and completions (G per prompt when sampling, one when greedy); the rows'
        seeds come from ``seed_step`` (default: the current step)."""
        engine = self.engine()
        g = 1 if greedy else self.cfg.method.grpo.group_size
        was_training = self.policy.training
        prompt_ids, params = [], []
        step = self.step if seed_step is None else seed_step
        for i, s in enumerate(samples):
            ids = engine.prompt_ids(s["messages"])
            for k in range(g):
                seed = row_seed(self.cfg.train.seed, step, first_row + i * g + k)
                prompt_ids.append(ids)
                params.append(self.params(greedy, seed))
        with torch.no_grad():
            out = generate(engine, prompt_ids, params)
        self.policy.train(was_training)
        return prompt_ids, out

    def score(
        self, samples: Sequence[dict[str, Any]], outs: Sequence[Rollout], g: int
    ) -> tuple[list[float], dict[str, list[float]]]:
        per = [s for s in samples for _ in range(g)]
        return score(
            self.rewards,
            [s["messages"] for s in per],
            [o.text for o in outs],
            per,
            [o.answer_tokens for o in outs],
        )

    def reference(self, batch: dict[str, torch.Tensor], n: int) -> torch.Tensor:
        acc = self.accelerator
        if self.frozen is not None:
            with torch.no_grad(), acc.autocast():
                return token_logps(self.frozen, batch["input_ids"], batch["attention_mask"], n)
        policy = self.policy
        was_training = policy.training
        policy.eval()  # no dropout, as in the preference recipe
        try:
            with torch.no_grad(), policy.disable_adapter(), acc.autocast():
                return token_logps(policy, batch["input_ids"], batch["attention_mask"], n)
        finally:
            policy.train(was_training)

    def __call__(self, micro: list[dict[str, Any]]) -> StepStats:
        acc, g = self.accelerator, self.cfg.method.grpo
        dev, G = acc.device, g.group_size
        t0 = time.perf_counter()
        # 1. Generate and score every micro-batch of the step (rows seeded by step and row).
        rows, first = [], acc.process_index * 1_000_000
        for b in micro:
            p_ids, outs = self.rollouts(b["prompts"], greedy=False, first_row=first)
            first += len(outs)
            total, each = self.score(b["prompts"], outs, G)
            rows.append((b["prompts"], p_ids, outs, total, each))
        t_gen = time.perf_counter() - t0
        # 2. What the step divides by, over every process.
        n_tokens = sum(len(o.ids) for r in rows for o in r[2])
        n_units = sum(len(r[2]) for r in rows) if g.loss_level == "sequence" else n_tokens
        units = float(acc.reduce(torch.tensor(float(n_units), device=dev), reduction="sum"))
        scale = acc.num_processes / max(units, 1.0)
        sums = torch.zeros(4, dtype=torch.float64, device=dev)  # loss, kl, clipped, tokens
        seq_tokens = 0
        all_rewards: list[float] = []
        named: dict[str, list[float]] = {r.name: [] for r in self.rewards}
        zero_std = 0
        for _prompts, p_ids, outs, total, each in rows:
            rewards = torch.tensor(total, dtype=torch.float32)
            adv = group_advantages(rewards, G, g.scale_rewards).to(dev)
            zero_std += int((rewards.view(-1, G).std(dim=1) == 0).sum())
            all_rewards += total
            for k, v in each.items():
                named[k] += v
            batch = {
                k: v.to(dev) for k, v in pad_rows(p_ids, [o.ids for o in outs], self.pad).items()
            }
            n = batch["completion_mask"].shape[1]
            ref = self.reference(batch, n) if g.beta else None
            with acc.autocast():
                logps = token_logps(self.model, batch["input_ids"], batch["attention_mask"], n)
                out = grpo_loss(
                    logps,
                    logps.detach(),  # one update per generation: the sampling policy is this one
                    adv,
                    batch["completion_mask"],
                    ref_logps=ref,
                    beta=g.beta,
                    epsilon_low=g.epsilon,
                    epsilon_high=g.epsilon_high or g.epsilon,
                    level=g.loss_level,
                )
                acc.backward(out.loss_sum * scale)
            sums += torch.stack(
                [out.loss_sum.detach(), out.kl_sum, out.clipped_sum, out.tokens]
            ).double()
            seq_tokens += int(batch["attention_mask"].sum())
        grad_norm = optimizer_step(
            self.model, self.optimizer, self.scheduler, acc, self.cfg.train.max_grad_norm
        )
        self.step += 1
        t_train = time.perf_counter() - t0 - t_gen
        sums = acc.reduce(sums, reduction="sum")
        metrics = {
            **self.reward_metrics(all_rewards, named),
            "kl": float(sums[1] / sums[3].clamp(min=1)),
            "clip_ratio": float(sums[2] / sums[3].clamp(min=1)),
            "completion_length": float(sums[3]) / max(1, len(all_rewards) * acc.num_processes),
            "frac_reward_zero_std": zero_std / max(1, len(all_rewards) // G),
            "gen_s": round(t_gen, 3),
            "train_s": round(t_train, 3),
        }
        for r in self.rewards:  # endpoint rewards: replies that carried no grade (scored 0)
            take = getattr(r.fn, "take_unparsed", None)
            if take is not None:
                metrics[f"rewards/{r.name}/unparsed"] = float(take())
        self.write_samples(rows)
        return StepStats(
            loss=float(sums[0]) / max(units, 1.0),
            tokens=int(sums[3]),
            seq_tokens=seq_tokens,
            grad_norm=grad_norm,
            metrics=metrics,
        )

    @property
    def pad(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def reward_metrics(self, total: list[float], named: dict[str, list[float]]) -> dict[str, float]:
        """Mean and std of the combined reward and of each reward, over every process."""
        acc = self.accelerator
        out = {}
        for name, values in (("reward", total), *((f"rewards/{k}", v) for k, v in named.items())):
            t = torch.tensor(values, dtype=torch.float64)
            s = torch.stack([t.sum(), (t * t).sum(), torch.tensor(float(len(values)))])
            s = acc.reduce(s.to(acc.device), reduction="sum")
            mean = float(s[0] / s[2])
            var = max(0.0, float(s[1] / s[2]) - mean * mean)
            out[f"{name}/mean" if name != "reward" else "reward"] = round(mean, 6)
            out[f"{name}/std" if name != "reward" else "reward_std"] = round(var**0.5, 6)
        return out

    def write_samples(self, rows: list[Any]) -> None:
        """The first prompt's completions of the step, appended to ``samples.jsonl``."""
        if self.samples_path is None or not self.accelerator.is_main_process or not rows:
            return
        every = self.cfg.train.log_every
        if self.step % every and self.step != 1:
            return
        prompts, _ids, outs, total, _each = rows[0]
        G = self.cfg.method.grpo.group_size
        with self.samples_path.open("a", encoding="utf-8") as f:
            for k in range(G):
                row = {
                    "step": self.step,
                    "kind": "rollout",
                    "prompt": prompts[0]["messages"][-1]["content"],
                    "answer": outs[k].text,
                    "reward": total[k],
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def evaluate(self, samples: Sequence[dict[str, Any]]) -> dict[str, float]:
        """Mean rewards of the held-out prompts: greedy (``val_reward``), and over a group of
        completions sampled as in training (``val_sampled_reward``, the policy's expected reward,
        which GRPO maximises and TRL's evaluation reports). The sampled rows draw the same seeds
        at every evaluation, so successive values differ by the policy, not by luck."""
        if not samples:
            return {}
        res: dict[str, float] = {}
        g = self.cfg.method.grpo.group_size
        for prefix, greedy in (("val", True), ("val_sampled", False)):
            _ids, outs = self.rollouts(samples, greedy=greedy, seed_step=EVAL_SEED_STEP)
            n = 1 if greedy else g
            total, each = self.score(samples, outs, n)
            res[f"{prefix}_reward"] = round(sum(total) / len(total), 6)
            for k, v in each.items():
                res[f"{prefix}_rewards/{k}"] = round(sum(v) / len(v), 6)
            tasks = [s.get("task") for s in samples for _ in range(n)]
            for task in sorted({t for t in tasks if t is not None}):
                mine = [r for r, t in zip(total, tasks) if t == task]
                res[f"{prefix}_reward@{task}"] = round(sum(mine) / len(mine), 6)
        return res


EVAL_SEED_STEP = -1  # the "step" held-out sampling seeds come from: never a training step
