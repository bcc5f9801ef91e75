"""What every section shares: no unknown keys, registry-name errors, span loss weights."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from tunesmith.config.names import closest


class Section(BaseModel):
    """Base for every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def unknown_name(what: str, name: str, choices: tuple[str, ...], fix: str) -> PydanticCustomError:
    """An error for a name missing from a registry, with the nearest one (no "Value error, ")."""
    near = closest(name, choices)
    hint = f"did you mean {near!r}? " if near else ""
    # The text goes in as context: a template would read braces in it as placeholders.
    return PydanticCustomError(
        "unknown_name", "{text}", {"text": f"unknown {what} {name!r}; {hint}{fix}"}
    )


def _check_loss_weights(v: dict[str, float] | None) -> dict[str, float] | None:
    """``loss_weights`` (``data`` and each source): non-empty markers, weights >= 0."""
    for marker, weight in (v or {}).items():
        if not marker or weight < 0:
            raise ValueError("markers must be non-empty strings and weights >= 0")
    return v


LossWeights = Annotated[dict[str, float] | None, AfterValidator(_check_loss_weights)]
"""Span loss weights, marker -> weight (one validator for ``data`` and ``data.datasets.N``)."""
