"""Vertical models behind one interface: ``fit(X, soft_labels, weights)``, ``predict_proba(X)``.

``TableModel`` wraps scikit-learn (gradient boosting, logistic regression, an MLP) on feature
rows; ``FTTransformerModel`` trains ``rtdl_revisiting_models``' FT-Transformer on them with torch;
``TextModel`` fine-tunes a ``transformers`` model with a sequence-classification head on
the record texts. Both stop early on a held-out part of the confident rows (or a few labelled
rows) when given one: the round with the lowest weighted loss there wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from tunesmith.errors import ConfigError

Holdout = tuple[Sequence[Any], Sequence[float]]
"""Rows and their targets (p(label 1)) for early stopping."""


class VerticalModel(Protocol):
    """What the loop needs of a vertical model."""

    def fit(
        self,
        x: Sequence[Any],
        soft_labels: Sequence[float],
        weights: Sequence[float],
        holdout: Holdout | None = None,
    ) -> dict[str, Any]:
        """Train on ``x``; returns what was chosen (rounds, epochs) for the report."""

    def predict_proba(self, x: Sequence[Any]) -> list[float]:
        """p(label 1) of each row."""


def log_loss(pred: Sequence[float], target: Sequence[float]) -> float:
    """Mean binary cross-entropy of predictions against (soft) targets."""
    eps = 1e-7
    total = 0.0
    for q, t in zip(pred, target):
        q = min(max(q, eps), 1 - eps)
        total -= t * math.log(q) + (1 - t) * math.log(1 - q)
    return total / max(len(pred), 1)


def _sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError(
            "serval.vertical.kind table needs scikit-learn: pip install 'tunesmith[serval]'"
        ) from None


class TableModel:
    """A scikit-learn classifier on numeric feature rows.

    Args:
        model: ``gbm`` (gradient boosting; early stopping picks the number of trees), ``logistic``
            (standardised logistic regression) or ``mlp`` (one hidden layer of 32; early stopping
            picks the epoch).
        seed: the models' random state.
        patience: epochs without a better held-out loss before the MLP stops.
    """

    def __init__(self, model: str = "gbm", *, seed: int = 0, patience: int = 5) -> None:
        _sklearn()
        self.kind, self.seed, self.patience = model, seed, patience
        self.model: Any = None

    def _new(self, rounds: int | None = None) -> Any:
        from sklearn.ensemble import GradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if self.kind == "gbm":
            return GradientBoostingClassifier(
                n_estimators=rounds or 200,
                learning_rate=0.05,
                max_depth=3,
                subsample=0.8,
                random_state=self.seed,
            )
        if self.kind == "logistic":
            return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        return make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=(32,), learning_rate_init=1e-2, random_state=self.seed
            ),
        )

    def fit(
        self,
        x: Sequence[Any],
        soft_labels: Sequence[float],
        weights: Sequence[float],
        holdout: Holdout | None = None,
    ) -> dict[str, Any]:
        """Fit on hard labels ``p >= 0.5`` with ``weights``; returns ``{"rounds": ...}``."""
        y = [int(p >= 0.5) for p in soft_labels]
        if len(set(y)) < 2:
            raise ConfigError("serval: the kept rows have one label only; lower noise.threshold")
        if self.kind == "logistic":
            self.model = self._new()
            self.model.fit(x, y, logisticregression__sample_weight=list(weights))
            return {"rounds": None}
        if self.kind == "gbm":
            model = self._new()
            model.fit(x, y, sample_weight=list(weights))
            rounds = model.n_estimators
            if holdout is not None and len(holdout[0]):
                losses = [
                    log_loss([float(r[1]) for r in stage], holdout[1])
                    for stage in model.staged_predict_proba(holdout[0])
                ]
                rounds = min(range(len(losses)), key=losses.__getitem__) + 1
                model = self._new(rounds)  # the same random state: the first trees again
                model.fit(x, y, sample_weight=list(weights))
            self.model = model
            return {"rounds": rounds}
        return self._fit_mlp(x, y, weights, holdout)

    def _fit_mlp(
        self, x: Sequence[Any], y: list[int], weights: Sequence[float], holdout: Holdout | None
    ) -> dict[str, Any]:
        import copy

        pipe = self._new()
        scaler, mlp = pipe.steps[0][1], pipe.steps[1][1]
        xs = scaler.fit_transform(x)
        xh = scaler.transform(holdout[0]) if holdout is not None and len(holdout[0]) else None
        best, best_loss, since = None, math.inf, 0
        epochs = 200
        for epoch in range(1, epochs + 1):
            mlp.partial_fit(xs, y, sample_weight=list(weights), classes=[0, 1])
            if xh is None:
                continue
            loss = log_loss([float(r[1]) for r in mlp.predict_proba(xh)], holdout[1])
            if loss < best_loss - 1e-6:
                best, best_loss, since = (copy.deepcopy(mlp), epoch), loss, 0
            else:
                since += 1
                if since >= self.patience:
                    break
        if best is not None:
            pipe.steps[1] = ("mlpclassifier", best[0])
            epochs = best[1]
        self.model = pipe
        return {"rounds": epochs}

    def predict_proba(self, x: Sequence[Any]) -> list[float]:
        """p(label 1) of each row."""
        return [float(r[1]) for r in self.model.predict_proba(x)]


def _rtdl() -> Any:
    try:
        import rtdl_revisiting_models
    except ImportError:
        raise ConfigError(
            "serval.vertical.model ft_transformer needs rtdl_revisiting_models: "
            "pip install 'tunesmith[serval]'"
        ) from None
    return rtdl_revisiting_models


class _EarlyStop:
    """Trains a torch model, keeping the epoch with the lowest held-out loss; stops after
    ``patience`` epochs without a gain (the FT-Transformer and the text classifier share it)."""

    def __init__(self, patience: int, epochs: int) -> None:
        self.patience, self.epochs, self.best_epoch = patience, epochs, epochs
        self.best_loss, self.since, self.state = math.inf, 0, None

    def train(
        self,
        model: Any,
        opt: Any,
        losses: Callable[[], Iterator[Any]],
        held_loss: Callable[[], float] | None,
    ) -> dict[str, Any]:
        """Up to ``epochs`` epochs, each stepping ``opt`` on every minibatch loss ``losses()``
        yields, then scoring ``held_loss()`` (when given); ends as ``restore`` does."""
        for epoch in range(1, self.epochs + 1):
            model.train()
            for loss in losses():
                opt.zero_grad()
                loss.backward()
                opt.step()
            if held_loss is not None and self.update(model, held_loss(), epoch):
                break
        return self.restore(model)

    def update(self, model: Any, held: float, epoch: int) -> bool:
        """Record epoch ``epoch``'s held-out loss; ``True`` when training should stop."""
        import copy

        if held < self.best_loss - 1e-6:
            self.state = copy.deepcopy(model.state_dict())
            self.best_loss, self.best_epoch, self.since = held, epoch, 0
            return False
        self.since += 1
        return self.since >= self.patience

    def restore(self, model: Any) -> dict[str, Any]:
        """Load the best epoch's weights (if any held-out loss was seen); the fit's summary."""
        if self.state is not None:
            model.load_state_dict(self.state)
        return {"rounds": self.best_epoch}


def _held_loss(model: VerticalModel, holdout: Holdout | None) -> Callable[[], float] | None:
    """The held-out log loss of ``model``'s current weights, or ``None`` without a holdout."""
    if holdout is None or not len(holdout[0]):
        return None
    return lambda: log_loss(model.predict_proba(holdout[0]), holdout[1])


class FTTransformerModel:
    """The FT-Transformer (Gorishniy et al. 2021) on standardised numeric feature rows.

    Trained with torch on the soft targets (weighted binary cross-entropy on one logit); the
    epoch with the lowest held-out loss is kept. The architecture is the library's default for
    ``blocks`` (``FTTransformer.get_default_kwargs``); the optimiser its AdamW parameter groups
    (no weight decay on embeddings, norms and biases).

    Args:
        blocks: transformer blocks (1-6; the library's defaults scale the width with it).
        epochs, lr, batch_size, patience: training settings.
        seed: initialisation and batch order.
    """

    def __init__(
        self,
        *,
        blocks: int = 3,
        epochs: int = 50,
        lr: float = 1e-4,
        batch_size: int = 64,
        patience: int = 5,
        seed: int = 0,
    ) -> None:
        _sklearn()
        self.rtdl = _rtdl()
        self.blocks, self.epochs, self.lr = blocks, epochs, lr
        self.batch_size, self.patience, self.seed = batch_size, patience, seed
        self.model: Any = None
        self.scaler: Any = None

    def _tensor(self, x: Sequence[Any]) -> Any:
        import torch

        return torch.tensor(self.scaler.transform(x), dtype=torch.float32)

    def fit(
        self,
        x: Sequence[Any],
        soft_labels: Sequence[float],
        weights: Sequence[float],
        holdout: Holdout | None = None,
    ) -> dict[str, Any]:
        """Train for up to ``epochs``; returns ``{"rounds": best epoch}``."""

        import torch
        from sklearn.preprocessing import StandardScaler

        if len({p >= 0.5 for p in soft_labels}) < 2:
            raise ConfigError("serval: the kept rows have one label only; lower noise.threshold")
        self.scaler = StandardScaler().fit(x)
        xs = self._tensor(x)
        p = torch.tensor(list(soft_labels), dtype=torch.float32)
        w = torch.tensor(list(weights), dtype=torch.float32)
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        ft = self.rtdl.FTTransformer
        self.model = ft(
            n_cont_features=xs.shape[1],
            cat_cardinalities=[],
            d_out=1,
            **ft.get_default_kwargs(self.blocks),
        )
        opt = torch.optim.AdamW(self.model.make_parameter_groups(), lr=self.lr, weight_decay=1e-5)

        def losses() -> Iterator[Any]:
            for rows in torch.randperm(len(xs), generator=gen).split(self.batch_size):
                logit = self.model(xs[rows], None).squeeze(-1)
                yield torch.nn.functional.binary_cross_entropy_with_logits(
                    logit, p[rows], weight=w[rows], reduction="sum"
                ) / w[rows].sum().clamp_min(1e-8)

        stop = _EarlyStop(self.patience, self.epochs)
        return stop.train(self.model, opt, losses, _held_loss(self, holdout))

    def predict_proba(self, x: Sequence[Any]) -> list[float]:
        """p(label 1) of each row."""
        import torch

        self.model.eval()
        with torch.no_grad():
            logit = self.model(self._tensor(x), None).squeeze(-1)
        return [float(v) for v in torch.sigmoid(logit)]


class TextModel:
    """A ``transformers`` model with a two-way classification head, trained on soft labels.

    The loss is the weighted cross-entropy against the soft target ``(1 - p, p)``; the epoch with
    the lowest held-out loss is kept.

    Args:
        name: model folder, hub id or ``builtin:tiny-qwen2`` (offline).
        epochs, lr, batch_size, max_length, patience: training settings.
        seed: initialisation of the head and batch order.
    """

    def __init__(
        self,
        name: str,
        *,
        epochs: int = 8,
        lr: float = 5e-4,
        batch_size: int = 16,
        max_length: int = 128,
        patience: int = 2,
        seed: int = 0,
    ) -> None:
        self.name, self.epochs, self.lr = name, epochs, lr
        self.batch_size, self.max_length, self.patience, self.seed = (
            batch_size,
            max_length,
            patience,
            seed,
        )
        self.model: Any = None
        self.tokenizer: Any = None

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from tunesmith.model.loader import resolve_model_path

        path = resolve_model_path(self.name, what="serval.vertical.text_model")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch.manual_seed(self.seed)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=2, dtype=torch.float32
        )
        self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def _logits(self, texts: Sequence[str]) -> Any:
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return self.model(**batch).logits

    def fit(
        self,
        x: Sequence[Any],
        soft_labels: Sequence[float],
        weights: Sequence[float],
        holdout: Holdout | None = None,
    ) -> dict[str, Any]:
        """Train for up to ``epochs``; returns ``{"rounds": best epoch}``."""
        import random

        import torch

        self._load()
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr)
        order = list(range(len(x)))
        rng = random.Random(self.seed)

        def losses() -> Iterator[Any]:
            rng.shuffle(order)
            for i in range(0, len(order), self.batch_size):
                rows = order[i : i + self.batch_size]
                logp = torch.log_softmax(self._logits([x[r] for r in rows]).float(), dim=-1)
                p = torch.tensor([soft_labels[r] for r in rows])
                w = torch.tensor([weights[r] for r in rows])
                yield (-((1 - p) * logp[:, 0] + p * logp[:, 1]) * w).sum() / w.sum()

        stop = _EarlyStop(self.patience, self.epochs)
        return stop.train(self.model, opt, losses, _held_loss(self, holdout))

    def predict_proba(self, x: Sequence[Any]) -> list[float]:
        """p(label 1) of each text."""
        import torch

        self.model.eval()
        out: list[float] = []
        with torch.no_grad():
            for i in range(0, len(x), 64):
                probs = torch.softmax(self._logits(x[i : i + 64]).float(), dim=-1)
                out += [float(v) for v in probs[:, 1]]
        return out


def make_vertical(cfg: Any, seed: int) -> VerticalModel:
    """The vertical model ``serval.vertical`` asks for."""
    if cfg.kind == "table" and cfg.model == "ft_transformer":
        ft = cfg.ft
        return FTTransformerModel(
            blocks=ft.blocks,
            epochs=ft.epochs,
            lr=ft.lr,
            batch_size=ft.batch_size,
            patience=ft.patience,
            seed=seed,
        )
    if cfg.kind == "table":
        return TableModel(cfg.model, seed=seed, patience=max(cfg.patience, 5))
    return TextModel(
        cfg.text_model,
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        patience=cfg.patience,
        seed=seed,
    )
