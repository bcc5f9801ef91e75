"""``rewards.png`` of a GRPO run: training rewards per step, held-out reward, KL and lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_grpo(records: list[dict[str, Any]], out: Path) -> Path | None:
    """Left: the combined and per-reward training means and the held-out (greedy) reward;
    right: KL to the reference and the mean completion length. ``None`` without step records."""
    rows = [r for r in records if "reward" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    ax.plot([r["step"] for r in rows], [r["reward"] for r in rows], label="reward", linewidth=1.5)
    names = sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    for key in names:
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*pts), label=key.split("/")[1], linewidth=1, alpha=0.7)
    for key, label in (("val_reward", "greedy"), ("val_sampled_reward", "sampled")):
        val = [(r["step"], r[key]) for r in records if key in r]
        if val:
            ax.plot(*zip(*val), "o-", label=f"held-out ({label})", linewidth=2)
    ax.set_ylabel("reward")
    ax.legend(fontsize=8)
    for key, label in (("kl", "KL"), ("completion_length", "completion tokens")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax2.plot(*zip(*pts), label=label, linewidth=1.5)
    ax2.legend(fontsize=8)
    for a in (ax, ax2):
        a.set_xlabel("optimiser step")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
