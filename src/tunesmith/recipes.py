"""Where the shipped YAML recipes live, and reading a config argument as a path or a recipe name.

A leaf (stdlib only): ``cli`` and ``api`` both use it, so neither imports the other for it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def recipe_dir() -> Path:
    """The folder of shipped YAML recipes."""
    return Path(str(resources.files("tunesmith") / "config" / "recipes"))


def resolve_config_arg(path: str) -> str:
    """A config path, or the name of a shipped recipe."""
    if Path(path).is_file() or path.endswith((".yaml", ".yml")):
        return path
    candidate = recipe_dir() / f"{path}.yaml"
    return str(candidate) if candidate.is_file() else path


__all__ = ["recipe_dir", "resolve_config_arg"]
