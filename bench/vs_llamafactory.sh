#!/usr/bin/env bash
# Training throughput of tunesmith vs LLaMA-Factory on identical work, on this CPU.
#
#   bash bench/vs_llamafactory.sh                    # fresh throw-away LLaMA-Factory venv
#   LF_VENV=/tmp/lf-venv bash bench/vs_llamafactory.sh   # build it there once, reuse it later
#
# Both tools train the same tiny Qwen2 (`tunesmith model tiny --arch qwen2`: ~4M parameters,
# random weights, local BPE tokenizer, ChatML template) from the same weights, on the same data
# (../shared/data/llamafactory/alpaca_en_demo.json + identity.json), with the same settings:
# cutoff 1024, LoRA on all linear layers (rank 8, alpha 16, dropout 0), batch 8, grad accum 1,
# lr 1e-4 cosine without warm-up, clip 1.0, seed 42, fp32 (PRECISION=bf16: both under bf16
# autocast, LF's `bf16: true`), no eval, offline, the same number of
# steps, OMP_NUM_THREADS=2, one run after the other. LLaMA-Factory turns gradient checkpointing on
# by default (recomputing activations: ~0.65-0.7x the speed here, see shared/STACK-NOTES.md);
# tunesmith's default is off, so for identical work LF runs with disable_gradient_checkpointing.
# Runs:
#
#   lf_default       LLaMA-Factory's default batching: padded batches (no packing)
#   lf_neat_packing  LLaMA-Factory with packing + neat_packing (block-diagonal 4-D mask)
#   tunesmith        tunesmith's default: isolated packing (position ids, no 2-D mask)
#
# Real tokens/s = non-padding tokens of the trained sequences / training-loop wall time, measured
# the same way for every run: from the end of step WARMUP to the end of the last step (model
# load, tokenisation, packing and the warm-up steps are out; everything the loop does per step is
# in). See bench/vs_llamafactory_helper.py for how each tool's tokens and times are read.
#
# Template: LLaMA-Factory's `chatml` renders exactly our tokenizer's template (no default system
# prompt — unlike `qwen`, whose default system prompt would add tokens —, so tunesmith needs no
# data.system). One difference remains in the labels: `chatml` also trains the "\n" after each
# <|im_end|>, tunesmith does not; same input tokens, one more trained token per sample for LF.
# The script prints the data of both (samples, real tokens, trained tokens) to show the parity.
#
# Identity placeholders: LLaMA-Factory trains identity.json's {{name}}/{{author}} literally.
# tunesmith refuses placeholders unless data.identity is set ("samples contain {{name}}/
# {{author}} placeholders; set data.identity..."), so the tunesmith config sets
# data.identity to the placeholders themselves — the substitution then leaves the text unchanged.
# Long samples: LLaMA-Factory truncates the 10 alpaca rows longer than 1024 tokens; tunesmith's
# default drops them, so it runs with data.truncation: truncate_right (same lengths; for these
# rows LF's rule also cuts the response's end; LF's packing cuts samples at cutoff - 1).
#
# Correctness cross-check: getting the same first batch out of two tools' shufflers is not
# possible, so both train one step on a fixed slice (the first 6 alpaca + 2 identity rows) with
# batch size 8: the whole slice is the first batch, whatever the order (LF also gets
# disable_shuffling). The step-1 loss is computed before any update, on the same initial weights
# (LoRA B = 0), as the mean over the batch's trained tokens — so it must agree across tools and
# batching modes. LF's logged loss includes the extra "\n" labels; the helper also recomputes
# LF's step-1 loss over tunesmith's label set (the labels after <|im_end|> dropped), which should
# match tunesmith's to float precision.
#
# Steps: one epoch is ~40 steps of 8 packed rows (314-315 rows); up to 39 steps keep the timed
# window inside the first epoch (no short last batch, no re-packing between epochs).
#
# Environment: LF_VENV (reuse/keep the LLaMA-Factory venv there), STEPS (30), WARMUP (2), ROUNDS (3:
# the three benchmark runs are repeated in turn, A B C C B A A B C ..., and each tool keeps its
# median round; every round is listed with the load other processes put on the machine),
# PRECISION (fp32 or bf16, for the timed runs), RUN_TIMEOUT (seconds per training run, 900), TUNESMITH (the tunesmith executable; default the
# repo's .venv), PYTHON (to create the LF venv; python3), KEEP_WORK=1 (keep the temp dir: logs,
# configs, metrics; its path goes to stderr).
# The last two lines are `ratio_vs_lf_default=X` and `ratio_vs_lf_neat_packing=Y`
# (tunesmith real tokens/s ÷ LLaMA-Factory's).

set -euo pipefail

LF_VERSION=0.9.5
TORCH_VERSION=2.13.0
# llamafactory 0.9.5 declares torchvision, torchaudio (CUDA-only builds on PyPI for torch 2.13:
# torchvision must never be installed here, see shared/STACK-NOTES.md, and the newest torchaudio,
# 2.11.1, needs CUDA libraries and fails to load next to the CPU torch), torchdata, gradio, av,
# modelscope, hf-transfer, fastapi, uvicorn, sse-starlette (web UI / API / hubs / media only).
# So llamafactory goes in with --no-deps, plus the libraries its training path imports, pinned at
# the newest versions its metadata allows (transformers<=5.6.0, datasets<=4.0.0,
# accelerate<=1.11.0, peft<=0.18.1, trl<=0.24.0, tyro<0.9); torch is pinned again in the same
# pip call so nothing can swap it. Its data/mm_plugin.py imports torchaudio at module level (used
# only for audio inputs), so the venv gets a stub torchaudio package that raises if ever used.
LF_PINS=(
  "torch==$TORCH_VERSION"
  "transformers==5.6.0"
  "datasets==4.0.0"
  "accelerate==1.11.0"
  "peft==0.18.1"
  "trl==0.24.0"
  "tyro<0.9"
  omegaconf
  matplotlib
  pyyaml
  numpy
  packaging
  safetensors
)
STEPS=${STEPS:-30}
ROUNDS=${ROUNDS:-3}
PRECISION=${PRECISION:-fp32}
[[ $PRECISION == fp32 || $PRECISION == bf16 ]] || {
  echo "PRECISION must be fp32 or bf16, got $PRECISION" >&2
  exit 1
}
WARMUP=${WARMUP:-2}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
LR=1.0e-4
SEED=42
BATCH=8
CUTOFF=1024

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=$(cd "$REPO/../shared/data/llamafactory" 2>/dev/null && pwd) || {
  echo "missing $REPO/../shared/data/llamafactory (the shared demo data)" >&2
  exit 1
}
HELPER="$REPO/bench/vs_llamafactory_helper.py"
if [[ -z ${TUNESMITH:-} ]]; then
  if [[ -x $REPO/.venv/bin/tunesmith ]]; then
    TUNESMITH=$REPO/.venv/bin/tunesmith
  else
    TUNESMITH=$(command -v tunesmith) || {
      echo "tunesmith not found: install the repo (pip install -e .) or set TUNESMITH" >&2
      exit 1
    }
  fi
fi
# the helper's summaries need only the standard library; run them with tunesmith's python
TS_PY=$(dirname "$TUNESMITH")/python
[[ -x $TS_PY ]] || TS_PY=python3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vs_llamafactory.XXXXXX")
cleanup() {
  if [[ -n ${KEEP_WORK:-} ]]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
T_SCRIPT=$SECONDS

export OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HOME="$WORK/hf_home"   # datasets' cache of LF's JSON loads goes with the temp dir
export PYTHONUNBUFFERED=1

say() { printf '%s\n' "$*"; }

# ---- LLaMA-Factory venv -------------------------------------------------------------------
LF_STAMP="llamafactory==$LF_VERSION ${LF_PINS[*]} torchaudio-stub"
install_lf() {
  local venv=$1
  local log="$WORK/install.log"
  say "installing LLaMA-Factory $LF_VERSION into $venv ..."
  rm -rf "$venv"
  if ! {
    local pip=(timeout 900 "$venv/bin/pip" install --disable-pip-version-check)
    "${PYTHON:-python3}" -m venv "$venv" &&
      "${pip[@]}" "torch==$TORCH_VERSION" &&
      "${pip[@]}" --no-deps "llamafactory==$LF_VERSION" &&
      "${pip[@]}" "${LF_PINS[@]}"
  } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    exit 1
  fi
  local site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$site/torchaudio"
  cat >"$site/torchaudio/__init__.py" <<'EOF'
"""Stub for the vs_llamafactory bench: no CPU torchaudio matches torch 2.13; text-only SFT
never calls it (LLaMA-Factory imports it at module level for audio inputs)."""


def __getattr__(name):
    raise ImportError(f"torchaudio stub: torchaudio.{name} is not available in this bench venv")
EOF
  "$venv/bin/python" -c 'import llamafactory.train.tuner' >/dev/null
  printf '%s\n' "$LF_STAMP" >"$venv/.vs_llamafactory_stamp"
}

T0=$SECONDS
if [[ -n ${LF_VENV:-} ]]; then
  if [[ -f $LF_VENV/.vs_llamafactory_stamp && $(cat "$LF_VENV/.vs_llamafactory_stamp") == "$LF_STAMP" ]]; then
    say "reusing LLaMA-Factory venv $LF_VENV"
  else
    install_lf "$LF_VENV"
  fi
else
  LF_VENV="$WORK/lf-venv"
  install_lf "$LF_VENV"
fi
LF_PY="$LF_VENV/bin/python"
T_INSTALL=$((SECONDS - T0))
say "LLaMA-Factory $("$LF_PY" -c 'import importlib.metadata as m; print(m.version("llamafactory"))')" \
  "(transformers $("$LF_PY" -c 'import transformers; print(transformers.__version__)')," \
  "peft $("$LF_PY" -c 'import peft; print(peft.__version__)'), torch" \
  "$("$LF_PY" -c 'import torch; print(torch.__version__)'));" \
  "$("$TUNESMITH" --version 2>&1 | tail -n 1); venv ready in ${T_INSTALL}s"

# ---- the bench model (one set of weights for both tools) -----------------------------------
MODEL="$WORK/model"
"$TUNESMITH" model tiny --arch qwen2 --out "$MODEL" >"$WORK/model.log" 2>&1 || {
  cat "$WORK/model.log" >&2
  exit 1
}

# ---- configs -------------------------------------------------------------------------------
"$TS_PY" "$HELPER" slice "$DATA" 6 2 "$WORK/xcheck_data"

# lf_config NAME DATASET_DIR DATASETS STEPS EXTRA_YAML
lf_config() {
  cat >"$WORK/$1.yaml" <<EOF
model_name_or_path: $MODEL
flash_attn: sdpa
stage: sft
do_train: true
disable_gradient_checkpointing: true
finetuning_type: lora
lora_target: all
lora_rank: 8
lora_alpha: 16
lora_dropout: 0.0
dataset_dir: $2
dataset: $3
template: chatml
cutoff_len: $CUTOFF
overwrite_cache: true
output_dir: $WORK/$1_out
logging_steps: 1
save_strategy: "no"
report_to: none
disable_tqdm: true
per_device_train_batch_size: $BATCH
gradient_accumulation_steps: 1
learning_rate: $LR
lr_scheduler_type: cosine
warmup_steps: 0
weight_decay: 0.0
max_grad_norm: 1.0
max_steps: $4
seed: $SEED
bf16: ${LF_BF16:-false}
fp16: false
$([[ ${LF_BF16:-false} == true ]] && echo 'use_cpu: true # transformers refuses bf16 on CPU without it')
$5
EOF
}

# ts_config NAME DATASETS_YAML STEPS
ts_config() {
  cat >"$WORK/$1.yaml" <<EOF
model:
  name: $MODEL
  dtype: float32
  attn_implementation: sdpa
data:
  datasets:
$2
  identity: {name: "{{name}}", author: "{{author}}"}
  max_length: $CUTOFF
  truncation: truncate_right
  packing: true
  cache: false
  seed: $SEED
method:
  type: lora
  lora: {rank: 8, alpha: 16, dropout: 0.0, targets: all-linear}
train:
  lr: $LR
  max_steps: $3
  batch_size: $BATCH
  grad_accum: 1
  scheduler: cosine
  warmup_ratio: 0.0
  weight_decay: 0.0
  max_grad_norm: 1.0
  seed: $SEED
  precision: ${TS_PRECISION:-fp32}
  log_every: 1
output:
  dir: $WORK/$1_run
EOF
}

FULL_TS="    - path: $DATA/alpaca_en_demo.json
    - path: $DATA/identity.json"
SLICE_TS="    - path: $WORK/xcheck_data/xcheck.json"
NEAT=$'packing: true\nneat_packing: true'

lf_config xcheck_lf_default "$WORK/xcheck_data" xcheck 1 "disable_shuffling: true"
lf_config xcheck_lf_neat_packing "$WORK/xcheck_data" xcheck 1 $'disable_shuffling: true\n'"$NEAT"
ts_config xcheck_tunesmith "$SLICE_TS" 1
# The timed runs train in PRECISION (the cross-check above stays fp32: it checks the labels).
LF_BF16=$([[ $PRECISION == bf16 ]] && echo true || echo false)
LF_BF16=$LF_BF16 lf_config lf_default "$DATA" alpaca_en_demo,identity "$STEPS" "include_num_input_tokens_seen: non_padding"
LF_BF16=$LF_BF16 lf_config lf_neat_packing "$DATA" alpaca_en_demo,identity "$STEPS" "$NEAT"
TS_PRECISION=$PRECISION ts_config tunesmith "$FULL_TS" "$STEPS"
"$TUNESMITH" validate "$WORK/tunesmith.yaml" >/dev/null

# ---- runs ----------------------------------------------------------------------------------
# timed NAME CMD...: run under `timeout`; /usr/bin/time -v gives peak RSS (children included)
# and the run's CPU time; the machine's busy CPU time before/after shows what others used.
timed() {
  local name=$1 t0=$SECONDS
  shift
  "$TS_PY" "$HELPER" busy >"$WORK/$name.busy0"
  if ! /usr/bin/time -v -o "$WORK/$name.time" timeout "$RUN_TIMEOUT" "$@" >"$WORK/$name.log" 2>&1; then
    say "run $name failed (or ran past ${RUN_TIMEOUT}s); last lines of its log:" >&2
    tail -n 30 "$WORK/$name.log" >&2
    exit 1
  fi
  "$TS_PY" "$HELPER" busy >"$WORK/$name.busy1"
  say "  $name: $((SECONDS - t0))s"
}
lf_run() {
  rm -rf "$WORK/$1_out" # a later round starts afresh (LF refuses a non-empty output_dir)
  timed "$1" "$LF_PY" "$HELPER" lf-train "$WORK/$1.yaml" "$WORK/$1.json" "${@:2}"
}
ts_run() { timed "$1" "$TUNESMITH" train "$WORK/$1.yaml" --no-progress --overwrite; } # rounds reuse the dir

say "cross-check runs (1 step on an 8-sample slice):"
lf_run xcheck_lf_default --xcheck
lf_run xcheck_lf_neat_packing --xcheck
ts_run xcheck_tunesmith
# Shared machines drift (the same run measured 1.3 s/step one minute and 2 s/step the next), so
# the three runs go in ROUNDS rounds, one of each in turn, and each tool keeps its median round
# (not its best: one lucky quiet minute must not decide a ratio); each round's load is listed.
summarize_round() { # NAME ROUND: its summary and usage as NAME.rROUND.{summary,usage}
  local name=$1 r=$2
  if [[ $name == tunesmith ]]; then
    "$TS_PY" "$HELPER" ts-summary "$WORK/tunesmith_run/metrics.jsonl" "$WARMUP" >"$WORK/$name.r$r.summary"
    cp "$WORK/$name.log" "$WORK/$name.r$r.log"
  else
    "$TS_PY" "$HELPER" lf-summary "$WORK/$name.json" "$WARMUP" >"$WORK/$name.r$r.summary"
  fi
  "$TS_PY" "$HELPER" usage "$WORK/$name.time" "$WORK/$name.busy0" "$WORK/$name.busy1" >"$WORK/$name.r$r.usage"
}
say "benchmark runs ($PRECISION, $STEPS steps, first $WARMUP not timed; $ROUNDS rounds, median round kept):"
bench_run() { # NAME ROUND
  if [[ $1 == tunesmith ]]; then ts_run tunesmith; else lf_run "$1"; fi
  summarize_round "$1" "$2"
}
for ((r = 1; r <= ROUNDS; r++)); do
  # Odd rounds run LF first, even rounds tunesmith first: sustained load slows the CPU down
  # (clock boost runs out), which must not always fall on the same tool.
  if ((r % 2)); then order=(lf_default lf_neat_packing tunesmith); else order=(tunesmith lf_neat_packing lf_default); fi
  for name in "${order[@]}"; do bench_run "$name" "$r"; done
done
"$TUNESMITH" data stats "$WORK/tunesmith.yaml" --json >"$WORK/ts_stats.json" 2>"$WORK/ts_stats.log"

# ---- report --------------------------------------------------------------------------------
for name in xcheck_lf_default xcheck_lf_neat_packing; do
  "$TS_PY" "$HELPER" lf-summary "$WORK/$name.json" "$WARMUP" >"$WORK/$name.summary"
done
for name in lf_default lf_neat_packing tunesmith; do
  mid=$("$TS_PY" "$HELPER" median "$WORK" "$name" "$ROUNDS")
  cp "$WORK/$name.r$mid.summary" "$WORK/$name.summary"
  cp "$WORK/$name.r$mid.usage" "$WORK/$name.usage"
  [[ $name == tunesmith ]] && cp "$WORK/$name.r$mid.log" "$WORK/$name.log"
done

say "script time: $((SECONDS - T_SCRIPT))s (LLaMA-Factory venv: ${T_INSTALL}s)"
"$TS_PY" "$HELPER" report "$WORK" "$STEPS" "$WARMUP"
