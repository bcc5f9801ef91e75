"""Vertical models: the table models learn a rule from weighted labels and stop early; the text
classifier's head trains on soft labels."""

from __future__ import annotations

import random

import pytest

from tunesmith.serval.vertical import TableModel, TextModel, log_loss

pytest.importorskip("sklearn", reason="the table models are scikit-learn's (tunesmith[serval])")


def rule_rows(n: int, seed: int) -> tuple[list[tuple[float, float]], list[float]]:
    rng = random.Random(seed)
    x = [(rng.uniform(0, 1), rng.uniform(0, 1)) for _ in range(n)]
    return x, [float(a + b > 1) for a, b in x]


def test_log_loss() -> None:
    assert log_loss([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.6931, abs=1e-4)


@pytest.mark.parametrize("kind", ["gbm", "logistic", "mlp"])
def test_table_models_learn_the_rule(kind: str) -> None:
    x, y = rule_rows(300, 0)
    xt, yt = rule_rows(200, 1)
    model = TableModel(kind, seed=0)
    info = model.fit(x, y, [1.0] * len(y), holdout=(xt[:50], yt[:50]))
    q = model.predict_proba(xt[50:])
    acc = sum((p >= 0.5) == (t == 1) for p, t in zip(q, yt[50:])) / 150
    assert acc > 0.9, (kind, acc)
    if kind == "gbm":
        assert 1 <= info["rounds"] <= 200


def test_gbm_early_stopping_stops_on_a_noisy_holdout() -> None:
    x, y = rule_rows(200, 0)
    rng = random.Random(3)
    noisy_holdout = [float(rng.random() < 0.5) for _ in range(60)]  # says nothing: stop early
    info = TableModel("gbm", seed=0).fit(x, y, [1.0] * 200, holdout=(x[:60], noisy_holdout))
    assert info["rounds"] < 200


def test_weights_decide_between_contradicting_labels() -> None:
    x = [(0.0,), (0.0,), (1.0,), (1.0,)] * 10
    y = [1.0, 0.0, 0.0, 1.0] * 10  # each point has both labels: the weights choose
    w = [5.0, 0.1, 5.0, 0.1] * 10
    model = TableModel("logistic")
    assert model.fit(x, y, w) == {"rounds": None}
    assert model.predict_proba([(0.0,)])[0] > 0.5
    assert model.predict_proba([(1.0,)])[0] < 0.5


def test_one_label_only_is_refused() -> None:
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="one label only"):
        TableModel("gbm").fit([(0.0,), (1.0,)], [0.9, 0.8], [1.0, 1.0])


@pytest.mark.usefixtures("one_torch_thread")
def test_text_model_trains_its_head_on_soft_labels(tiny_qwen2: object) -> None:
    texts = [f"case {i}: glucose {'high' if i % 2 else 'low'}" for i in range(24)]
    soft = [0.9 if i % 2 else 0.1 for i in range(24)]
    model = TextModel(str(tiny_qwen2), epochs=4, lr=2e-3, batch_size=8, seed=0)
    info = model.fit(texts, soft, [1.0] * 24, holdout=(texts[:8], soft[:8]))
    assert 1 <= info["rounds"] <= 4
    q = model.predict_proba(["case 99: glucose high", "case 98: glucose low"])
    assert q[0] > q[1]  # learned which word decides
    assert log_loss(model.predict_proba(texts), soft) < log_loss([0.5] * 24, soft)


@pytest.mark.usefixtures("one_torch_thread")
def test_fit_vertical_on_texts_keeps_the_confident_rows(tiny_qwen2: object) -> None:
    from tunesmith.api import load_config
    from tunesmith.serval.loop import fit_vertical
    from tunesmith.serval.records import Records

    n = 24
    texts = tuple(f"case {i}: glucose {'high' if i % 2 else 'low'}" for i in range(n))
    train = Records(tuple(map(str, range(n))), texts, tuple(i % 2 for i in range(n)), None)
    # The LLM's labels: confident and right on 16 rows, unsure (and wrong) on the other 8.
    probs = [(0.95 if i % 2 else 0.05) if i < 16 else (0.45 if i % 2 else 0.55) for i in range(n)]
    cfg = load_config(
        "serval-demo",
        "serval.vertical.kind=text",
        f"serval.vertical.text_model={tiny_qwen2}",
        "serval.vertical.epochs=3",
        "serval.vertical.lr=2e-3",
        "serval.vertical.batch_size=8",
        "serval.noise.threshold=0.9",
        "serval.noise.min_kept=4",
        "serval.noise.gmm=false",
    )
    model, info = fit_vertical(train, probs, cfg, None, seed=0)
    assert info["kept"] == 16 and info["kept_acc"] == 1.0
    assert info["clean"] == 16 - max(int(16 * 0.2), 1)  # a fifth held out for early stopping
    assert 1 <= info["rounds"] <= 3
    q = model.predict_proba(["case 99: glucose high", "case 98: glucose low"])
    assert q[0] > q[1]
