"""tunesmith: fine-tune open LLMs on your own data from one YAML file."""

import logging as _logging

__version__ = "0.1.0"

# bitsandbytes (imported by peft/accelerate) warns at import that the optional `kernels` hub
# package is missing; it falls back to its own CPU kernels, and `kernels` would download anyway.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
