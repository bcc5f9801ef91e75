"""The optional extras declare what the code imports, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]
# Distribution name -> the module the code imports (or why it needs no import of ours).
MODULE = {
    "bitsandbytes": "bitsandbytes",
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "sacrebleu": "sacrebleu",
    "rouge-score": "rouge_score",
    "galore-torch": "galore_torch",
    "apollo-torch": "apollo_torch",
    "badam": "badam",
    "gguf": "gguf",
    "gradio": "gradio",
    "scikit-learn": "sklearn",
    "rtdl_revisiting_models": "rtdl_revisiting_models",
}
INDIRECT = {"tensorboard": "Accelerate's tracker imports it for train.report_to: tensorboard"}


def _extras() -> dict[str, list[str]]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return meta["project"]["optional-dependencies"]


def _dist(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0]


def test_every_user_extra_is_imported_by_the_code() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "src").rglob("*.py"))
    for extra, requirements in _extras().items():
        if extra == "dev":
            continue
        for dist in map(_dist, requirements):
            if dist in INDIRECT:
                continue
            module = MODULE.get(dist)
            assert module, f"[{extra}] {dist}: add it to MODULE or INDIRECT with its reason"
            imported = re.search(rf"^\s*(import|from) {module}\b", source, re.M)
            assert imported, f"[{extra}] declares {dist}, which no module of tunesmith imports"


def test_dev_installs_every_user_extra() -> None:
    extras = _extras()
    dev = {_dist(r) for r in extras["dev"]}
    for extra, requirements in extras.items():
        missing = {_dist(r) for r in requirements} - dev
        assert not missing, f"[dev] lacks {sorted(missing)} of [{extra}]: the tests need them"
