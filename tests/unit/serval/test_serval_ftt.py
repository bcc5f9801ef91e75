"""The FT-Transformer vertical model: learns a table rule from soft labels, follows the sample
weights, stops early, and is chosen (or refused) by the serval config."""

from __future__ import annotations

import random
import sys

import pytest

from tunesmith.errors import ConfigError
from tunesmith.serval.vertical import FTTransformerModel, log_loss, make_vertical

pytest.importorskip("sklearn", reason="the scaler is scikit-learn's (tunesmith[serval])")
pytest.importorskip("rtdl_revisiting_models", reason="the FT-Transformer (tunesmith[serval])")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rule_rows(n: int, seed: int) -> tuple[list[tuple[float, ...]], list[float]]:
    """Three features, the label a noisy-free rule on two of them (the third is noise)."""
    rng = random.Random(seed)
    x = [(rng.uniform(0, 10), rng.uniform(50, 150), rng.gauss(0, 1)) for _ in range(n)]
    return x, [float(a / 10 + (b - 50) / 100 > 1) for a, b, _ in x]


def test_ft_transformer_learns_the_rule_from_soft_labels() -> None:
    x, y = rule_rows(300, 0)
    xt, yt = rule_rows(200, 1)
    soft = [0.85 if t else 0.15 for t in y]  # soft targets, not 0/1
    model = FTTransformerModel(blocks=1, epochs=30, lr=1e-3, batch_size=32, patience=5, seed=0)
    info = model.fit(x, soft, [1.0] * len(y), holdout=(xt[:50], yt[:50]))
    assert 1 <= info["rounds"] <= 30
    q = model.predict_proba(xt[50:])
    assert len(q) == 150 and all(0.0 < p < 1.0 for p in q)
    acc = sum((p >= 0.5) == (t == 1) for p, t in zip(q, yt[50:])) / 150
    assert acc > 0.85, acc  # chance is about 0.5
    assert log_loss(q, yt[50:]) < log_loss([0.5] * 150, yt[50:])


def test_ft_transformer_weights_decide_between_contradicting_labels() -> None:
    x = [(0.0, 1.0), (0.0, 1.0), (1.0, 0.0), (1.0, 0.0)] * 16
    y = [1.0, 0.0, 0.0, 1.0] * 16  # each point has both labels: the weights choose
    w = [5.0, 0.1, 5.0, 0.1] * 16
    model = FTTransformerModel(blocks=1, epochs=15, lr=1e-3, batch_size=16, seed=0)
    assert model.fit(x, y, w) == {"rounds": 15}  # no holdout: every epoch runs
    q = model.predict_proba([(0.0, 1.0), (1.0, 0.0)])
    assert q[0] > 0.7 and q[1] < 0.3, q
    flipped = FTTransformerModel(blocks=1, epochs=15, lr=1e-3, batch_size=16, seed=0)
    flipped.fit(x, y, [w[i + 1 - 2 * (i % 2)] for i in range(len(w))])  # swap each pair's weight
    q = flipped.predict_proba([(0.0, 1.0), (1.0, 0.0)])
    assert q[0] < 0.3 and q[1] > 0.7, q


def test_ft_transformer_stops_early_on_a_holdout_that_says_nothing() -> None:
    x, y = rule_rows(200, 0)
    rng = random.Random(3)
    noise = [float(rng.random() < 0.5) for _ in range(60)]
    model = FTTransformerModel(blocks=1, epochs=40, lr=1e-3, batch_size=32, patience=2, seed=0)
    assert model.fit(x, y, [1.0] * 200, holdout=(x[:60], noise))["rounds"] < 40


def test_ft_transformer_refuses_one_label_only() -> None:
    with pytest.raises(ConfigError, match="one label only"):
        FTTransformerModel(blocks=1).fit([(0.0,), (1.0,)], [0.9, 0.8], [1.0, 1.0])


def test_config_selects_the_ft_transformer_and_its_settings() -> None:
    from tunesmith.api import load_config

    cfg = load_config(
        "serval-demo",
        "serval.vertical.model=ft_transformer",
        "serval.vertical.ft.blocks=2",
        "serval.vertical.ft.epochs=7",
    )
    assert cfg.serval is not None
    model = make_vertical(cfg.serval.vertical, seed=5)
    assert isinstance(model, FTTransformerModel)
    assert (model.blocks, model.epochs, model.lr, model.seed) == (2, 7, 1e-4, 5)


def test_config_rule_ft_transformer_is_a_table_model() -> None:
    from tunesmith.api import load_config

    with pytest.raises(ConfigError, match="ft_transformer' is a table model"):
        load_config(
            "serval-demo", "serval.vertical.kind=text", "serval.vertical.model=ft_transformer"
        )


def test_missing_extra_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rtdl_revisiting_models", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'tunesmith\[serval\]'"):
        FTTransformerModel()
