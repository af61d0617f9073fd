#!/usr/bin/env bash
# One GPU node, one call, a fixed time: the MFU levers sweep and the throughput sweep with every
# comparison, each JSON written as it goes (a run cut off by its timeout keeps what it measured).
# Written for short leases of a single GPU (and for a first look at a new site's node); record
# the results here afterwards with benchmarks/format_results.py (docs/benchmarks.md).
#
#   bash benchmarks/gpu_session.sh OUT_DIR
#
# Settings (environment, defaults for an H100/H200): PYTHON (python3), DEVICE (cuda), PRECISION
# (bf16), CONFIG (base) BATCHES (64,128,256) SDPA (default,cudnn,flash) COMPILE_BATCHES (128)
# PROFILE_BATCH (64) LEVERS_TIMEOUT_S (240) for the levers; CONFIGS (base,small,tiny) BATCH_SIZES
# (per config) COMPARE (all) BUDGET_S (180) THROUGHPUT_TIMEOUT_S (300) for the throughput sweep;
# STEPS and MIN_SECONDS per measurement. Wheels in ./.whl (e.g. deepspeed, for the ZeRO
# comparison) are installed into a private directory first, offline.
set -euo pipefail
mkdir -p "${1:?usage: bash benchmarks/gpu_session.sh OUT_DIR}"
out=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
  site=$(mktemp -d)
  "$python" -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl
  export PYTHONPATH="$site:$PYTHONPATH"
fi
command -v nvidia-smi > /dev/null && nvidia-smi > "$out/nvidia_smi.txt" 2>&1 || true
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

step_args=()
[ -n "${STEPS:-}" ] && step_args+=(--steps "$STEPS")
[ -n "${MIN_SECONDS:-}" ] && step_args+=(--min-seconds "$MIN_SECONDS")

status=0
timeout "${LEVERS_TIMEOUT_S:-240}" "$python" benchmarks/mfu_levers.py --device "${DEVICE:-cuda}" \
  --config "${CONFIG:-base}" --batches "${BATCHES:-64,128,256}" --sdpa "${SDPA:-default,cudnn,flash}" \
  --compile-batches "${COMPILE_BATCHES-128}" --profile-batch "${PROFILE_BATCH:-64}" "${step_args[@]}" \
  --out "$out/levers.json" || { status=$?; echo "mfu_levers: exit $status (its JSON keeps what it measured)"; }

sweep_args=()
[ -n "${BATCH_SIZES:-}" ] && sweep_args+=(--batch-sizes "$BATCH_SIZES")
timeout "${THROUGHPUT_TIMEOUT_S:-300}" "$python" -m mosaic_hpc.cli bench throughput \
  --configs "${CONFIGS:-base,small,tiny}" --device "${DEVICE:-cuda}" --precision "${PRECISION:-bf16}" \
  --compare "${COMPARE:-all}" --time-budget-s "${BUDGET_S:-180}" "${sweep_args[@]}" "${step_args[@]}" \
  --out "$out/throughput.json" || { status=$?; echo "bench throughput: exit $status"; }

[ -f "$out/throughput.json" ] && "$python" benchmarks/format_results.py "$out/throughput.json" \
  --heading "## Throughput (${DEVICE:-cuda}, ${PRECISION:-bf16})" > "$out/throughput.md"
echo "results in $out:" && find "$out" -maxdepth 1 -type f -printf '  %f\n'

exit "$status"
