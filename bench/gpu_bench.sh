#!/usr/bin/env bash
# The GPU measurement of issue 18 (tokens/s and MFU against the GPU's bf16 peak, with and without
# Liger's fused loss), prepared to run in one call of the device tool, whose machine has no network:
#
#   bash bench/gpu_bench.sh fetch        # here, once: wheels + bench data into bench/.gpu/ (ignored)
#   # then one device call:  command "bash bench/gpu_bench.sh", carry ["bench/.gpu"], timeout_s 560
#
# `fetch` downloads (no dependencies) the packages tunesmith needs beyond what the device image holds
# (its own CUDA torch, Python 3.12, numpy, pandas, pyarrow, matplotlib, accelerate, safetensors, ...:
# /work/.library/device/KINDS.md), at the versions installed in this repo's .venv (the tested
# set), plus liger-kernel, for Python $GPU_PY (3.12); it copies the two bench data files from
# ../shared, which does not travel to the device. On the device the wheels go into a --target folder
# put first on PYTHONPATH (over the image's older transformers / huggingface-hub), tunesmith runs
# from src/, and bench/train_bench.py runs on a GPU-sized model built by `tunesmith model tiny`
# (random weights, the shipped 4k-token tokenizer; MODEL below) in these runs, each variant in its
# own process:
#
#   1. full and LoRA: padded (fp32), packed+fast+bf16 with the default loss (auto: Liger on CUDA)
#   2. full and LoRA: packed+fast+bf16 with --ce-impl chunked (tunesmith's own chunked loss: no Liger)
#
# Everything printed goes to $OUT/gpu_bench.log as well (the device tool brings $OUT back), with
# the results as JSON. Environment: OUT (default ./gpu-bench-out), PYTHON (python3), STEPS (10),
# WARMUP (3), MAX_LENGTH (2048), BATCH (8), MODEL (model tiny arguments), GPU_PY (fetch: 3.12).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GPU_DIR=$REPO/bench/.gpu
PYTHON=${PYTHON:-python3}
# ~0.4B parameters: hidden 1536, 16 layers, MLP 4096, 12 heads / 4 KV heads (head dim 128)
MODEL=${MODEL:-"--arch qwen2 --hidden-size 1536 --intermediate-size 4096 --layers 16 --heads 12 --kv-heads 4"}
PACKAGES=(
  pydantic pydantic-core annotated-types typing-inspection transformers huggingface-hub httpx2
  httpcore2 tokenizers datasets dill multiprocess xxhash peft rich typer click platformdirs hf-xet
)

fetch() {
  local venv_py=$REPO/.venv/bin/python
  [[ -x $venv_py ]] || { echo "fetch needs the repo's .venv (the tested versions)" >&2; exit 1; }
  local specs=() name version
  for name in "${PACKAGES[@]}"; do
    version=$("$venv_py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    specs+=("$name==$version")
  done
  specs+=(liger-kernel)
  rm -rf "$GPU_DIR"
  mkdir -p "$GPU_DIR/wheels" "$GPU_DIR/data"
  "$venv_py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "${GPU_PY:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$GPU_DIR/wheels" "${specs[@]}" 2>&1 |
    grep -v "^WARNING: Location" || true
  local shared=$REPO/../shared/data/llamafactory
  cp "$shared/alpaca_en_demo.json" "$shared/identity.json" "$GPU_DIR/data/"
  ls "$GPU_DIR/wheels"
  du -sh "$GPU_DIR"
}

bench() {
  [[ -d $GPU_DIR/wheels ]] || { echo "no $GPU_DIR/wheels: run 'bash bench/gpu_bench.sh fetch' here first and carry bench/.gpu" >&2; exit 1; }
  local site=/tmp/tunesmith-gpu-site work=/tmp/tunesmith-gpu-work t0=$SECONDS
  rm -rf "$site" "$work" && mkdir -p "$work"
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --target "$site" \
    "$GPU_DIR"/wheels/*.whl
  export PYTHONPATH=$site:$REPO/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
  export TOKENIZERS_PARALLELISM=false
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$PYTHON" - <<'EOF'
import importlib.metadata as m
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for name in ("transformers", "peft", "accelerate", "pydantic", "liger-kernel", "triton"):
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "MISSING")
import tunesmith.train.loop  # noqa: F401  (the whole training import chain)
EOF
  # shellcheck disable=SC2086  # MODEL is a list of arguments
  "$PYTHON" -m tunesmith model tiny $MODEL --out "$work/model" >/dev/null
  echo "model built ($MODEL) in $((SECONDS - t0)) s"
  local common=(--model "$work/model" --data "$GPU_DIR/data" --methods full,lora
    --steps "${STEPS:-10}" --warmup "${WARMUP:-3}" --max-length "${MAX_LENGTH:-2048}"
    --batch-size "${BATCH:-8}")
  echo "== 1. padded fp32 and packed+fast+bf16, default loss (Liger when installed)"
  timeout 300 "$PYTHON" "$REPO/bench/train_bench.py" "${common[@]}" \
    --variants padded,packed+fast+bf16 --json "$OUT/gpu_liger.json" || echo "run 1 failed: $?"
  echo "== 2. packed+fast+bf16 with tunesmith's chunked loss (no Liger)"
  timeout 200 "$PYTHON" "$REPO/bench/train_bench.py" "${common[@]}" \
    --variants packed+fast+bf16 --ce-impl chunked --json "$OUT/gpu_chunked.json" ||
    echo "run 2 failed: $?"
  echo "total $((SECONDS - t0)) s"
}

case ${1:-bench} in
  fetch) fetch ;;
  bench)
    OUT=${OUT:-$REPO/gpu-bench-out}
    mkdir -p "$OUT"
    bench 2>&1 | tee "$OUT/gpu_bench.log"
    ;;
  *) echo "usage: bash bench/gpu_bench.sh [fetch|bench]" >&2; exit 2 ;;
esac
