"""Third-party deprecation noise is hidden from users who cannot act on it.

Every LoRA run used to print a ``FutureWarning`` from transformers about a property that peft
reads: nothing in a user's config changes it. ``FutureWarning``, ``DeprecationWarning`` and
``PendingDeprecationWarning`` raised inside the libraries below are ignored. Our own warnings and
every other category still show; ``TUNESMITH_VERBOSE=1``, ``tunesmith --debug`` or Python's own
``-W`` / ``PYTHONWARNINGS`` (the user's choice wins) show everything.
"""

from __future__ import annotations

import os
import sys
import warnings

THIRD_PARTY = (
    "accelerate",
    "bitsandbytes",
    "datasets",
    "huggingface_hub",
    "liger_kernel",
    "matplotlib",
    "peft",
    "PIL",
    "safetensors",
    "tokenizers",
    "torch",
    "torchvision",
    "transformers",
)
DEPRECATIONS = (FutureWarning, DeprecationWarning, PendingDeprecationWarning)
VERBOSE_ENV = "TUNESMITH_VERBOSE"


def quiet_third_party(*, verbose: bool = False) -> None:
    """Ignore the deprecation warnings of ``THIRD_PARTY`` libraries in this process.

    Inherited by the processes of a distributed run (they run the CLI too). A no-op when
    ``verbose``, when ``TUNESMITH_VERBOSE`` is set to anything but ``0``, or under ``python -W``.
    """
    if verbose or os.environ.get(VERBOSE_ENV, "0") not in ("", "0") or sys.warnoptions:
        return
    modules = "(" + "|".join(THIRD_PARTY) + r")(\.|$)"  # the package or one of its modules
    for category in DEPRECATIONS:
        warnings.filterwarnings("ignore", category=category, module=modules)


def quiet_transformers() -> None:
    """Silence per-load progress bars and advisory warnings that clutter a CLI."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
