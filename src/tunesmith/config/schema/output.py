"""``output``, ``export``, ``serve``: where a run goes, and the defaults of the commands that
run after training."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tunesmith.config.schema.base import Section


class OutputConfig(Section):
    """Where the run directory goes."""

    name: str = Field("run", description="Run name; the default directory is runs/<name>.")
    dir: str | None = Field(None, description="Run directory (default: runs/<name>).")
    overwrite: bool = Field(
        False,
        description="Replace an earlier run in the run directory (--overwrite). Without it a "
        "finished or started run there is kept and training stops with the ways out (--resume).",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\"):
            raise ValueError("must be a plain name without slashes")
        return v

    @property
    def run_dir(self) -> str:
        """The run directory path."""
        return self.dir or f"runs/{self.name}"


class ExportConfig(Section):
    """Defaults of ``tunesmith export RUN`` for this run (command-line flags win)."""

    dir: str | None = Field(None, description="Destination folder (the --out flag).")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="Cast the exported weights (default: as trained)."
    )
    max_shard_size: str = Field("2GB", description="Largest safetensors shard, e.g. 500MB, 2GB.")
    adapter_only: bool = Field(False, description="Copy the adapter instead of merging it.")
    calibration_samples: int = Field(
        128, ge=1, description="GPTQ export: training prompts of the run to calibrate on."
    )
    gptq_group_size: int = Field(
        128,
        ge=-1,
        description="GPTQ export: columns per scale (-1: one per column); must divide in_features.",
    )


class ServeConfig(Section):
    """Defaults of ``tunesmith serve RUN`` for this run (command-line flags win)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key_env: str = Field(
        "TUNESMITH_API_KEY", description="Environment variable holding the API key, if any."
    )
    max_batch: int = Field(32, ge=1, description="Sequences decoded together.")
    max_tokens: int = Field(4096, ge=1, description="Largest max_tokens a request may ask for.")
    default_max_tokens: int = Field(512, ge=1, description="max_tokens when a request sets none.")
    max_concurrent: int = Field(256, ge=1, description="Requests in flight before 429s.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body.")
