"""tunesmith: fine-tune open LLMs on your own data from one YAML file.

The Python API uses the CLI's own objects (see :mod:`tunesmith.api`)::

    import tunesmith

    cfg = tunesmith.load_config("identity", "train.max_steps=50", output={"dir": "runs/nb"})
    result = tunesmith.train(cfg)
    print(tunesmith.chat(result.run_dir, "Who are you?"))
    tunesmith.export(result.run_dir, "exports/nb")

Names load on first use (PEP 562), so ``import tunesmith`` stays instant.
"""

from __future__ import annotations

import importlib
import logging as _logging
from typing import Any

__version__ = "0.1.0"

# bitsandbytes (imported by peft/accelerate) warns at import that the optional `kernels` hub
# package is missing; it falls back to its own CPU kernels, and `kernels` would download anyway.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)

# public name -> the module that defines it (``train`` / ``export`` are callable packages)
_LAZY = {
    "load_config": "tunesmith.api",
    "chat": "tunesmith.api",
    "recipe_for": "tunesmith.api",
    "train": "tunesmith.train",
    "export": "tunesmith.export",
    "Engine": "tunesmith.infer.engine",
    "GenParams": "tunesmith.infer.sampling",
    "RunConfig": "tunesmith.config.schema",
    "TrainResult": "tunesmith.train.recipes.sft",
    "ExportResult": "tunesmith.export.merge",
    "TunesmithError": "tunesmith.errors",
    "ConfigError": "tunesmith.errors",
    "DataError": "tunesmith.errors",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name in ("train", "export") else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
