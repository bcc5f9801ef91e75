"""Generation parameters and per-row token selection for a batch of sequences.

Every row of a batch may carry its own parameters (greedy next to sampled, different
temperatures, seeds and penalties), so the choice is made row by row on the last logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.errors import ConfigError


@dataclass
class GenParams:
    """Generation parameters; ``temperature == 0`` means greedy.

    ``presence_penalty`` and ``frequency_penalty`` follow OpenAI's definition (subtracted from the
    logits of tokens already generated); ``repetition_penalty`` follows the CTRL / transformers one
    (divides positive logits of any token seen in the prompt or the answer).
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def check(self) -> GenParams:
        """Raise ``ConfigError`` on values that cannot work; returns ``self``."""
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens}: must be at least 1")
        if self.temperature < 0:
            raise ConfigError(f"temperature={self.temperature}: must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p}: must be in (0, 1]")
        if self.top_k < 0:
            raise ConfigError(f"top_k={self.top_k}: must be >= 0 (0 = off)")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty={self.repetition_penalty}: must be > 0")
        if any(not s for s in self.stop):
            raise ConfigError("stop: empty stop strings are not allowed")
        return self

    @property
    def greedy(self) -> bool:
        """True when the arg-max token is always taken."""
        return self.temperature <= 0


def make_generator(seed: int | None) -> Any:
    """A private RNG for one sequence: seeded ones repeat, whatever else is in the batch."""
    import torch

    gen = torch.Generator(device="cpu")
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


def apply_penalties(logits: Any, params: GenParams, prompt: list[int], answer: list[int]) -> Any:
    """Penalise repeats in one row of logits (returns a new tensor)."""
    import torch

    row = logits
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(prompt) | set(answer)), dtype=torch.long, device=row.device)
        vals = row[seen]
        p = params.repetition_penalty
        row = row.clone()
        row[seen] = torch.where(vals < 0, vals * p, vals / p)
    if (params.presence_penalty or params.frequency_penalty) and answer:
        ids, counts = torch.tensor(answer, device=row.device).unique(return_counts=True)
        row = row.clone()
        row[ids] -= params.presence_penalty + params.frequency_penalty * counts.to(row.dtype)
    return row


def sample_row(logits: Any, params: GenParams, generator: Any) -> int:
    """Temperature, top-k and top-p (nucleus) sampling for one row of logits."""
    return sample_rows(logits.unsqueeze(0), [params], [generator])[0]


def sample_rows(logits: Any, params: Sequence[GenParams], generators: Sequence[Any]) -> list[int]:
    """Sample one token per row ``[rows, vocab]``, each row with its own settings and RNG.

    Vectorised: one sort for top-k / top-p, then inverse-CDF sampling with one uniform number
    drawn from each row's own generator, so a seeded row repeats whatever its neighbours are.
    """
    import torch

    vocab = logits.shape[-1]
    temps = torch.tensor([p.temperature for p in params], dtype=torch.float32)
    scores = logits.float().cpu() / temps[:, None]
    u = torch.cat([torch.rand(1, generator=g) for g in generators])
    ks = torch.tensor([p.top_k if 0 < p.top_k < vocab else vocab for p in params])
    tops = torch.tensor([p.top_p for p in params], dtype=torch.float32)
    filtered = bool((ks < vocab).any() or (tops < 1.0).any())
    order = None
    if filtered:  # sorting is the expensive part on CPU: only when a row needs it
        scores, order = torch.sort(scores, dim=-1, descending=True)
        drop = torch.arange(vocab)[None, :] >= ks[:, None]
        probs = scores.masked_fill(drop, float("-inf")).softmax(-1)
        # Drop a token when the tokens ranked before it already cover top_p (the first stays).
        drop |= probs.cumsum(-1) - probs > tops[:, None]
        scores = scores.masked_fill(drop, float("-inf"))
    cdf = scores.softmax(-1).cumsum(-1)
    # right=True: the first token whose cumulative mass exceeds u, never a zero-mass one.
    pick = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).clamp(max=vocab - 1)
    if order is not None:
        pick = order.gather(1, pick)
    return pick.squeeze(1).tolist()


def choose_tokens(
    logits: Any,
    params: Sequence[GenParams],
    prompts: Sequence[list[int]],
    answers: Sequence[list[int]],
    generators: Sequence[Any],
) -> list[int]:
    """The next token of every row of ``logits`` ``[batch, vocab]``."""
    out = logits.argmax(-1).tolist()
    sampled: list[int] = []
    rows = []
    for i, p in enumerate(params):
        plain = p.repetition_penalty == 1.0 and not (p.presence_penalty or p.frequency_penalty)
        row = logits[i] if plain else apply_penalties(logits[i], p, prompts[i], answers[i])
        if p.greedy:
            if not plain:
                out[i] = int(row.argmax().item())
        else:
            sampled.append(i)
            rows.append(row)
    if sampled:
        import torch

        picks = sample_rows(
            torch.stack(rows), [params[i] for i in sampled], [generators[i] for i in sampled]
        )
        for i, t in zip(sampled, picks):
            out[i] = t
    return out
