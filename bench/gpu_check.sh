#!/usr/bin/env bash
# GPU check (issues 5 and 8): a few CLoE training steps at 112³ with RFNet widths and bf16 autocast (seconds/step,
# peak GPU memory by torch.cuda.max_memory_allocated) beside the all-encoders-always formulation, the same in fp32,
# the peak memory of a step with every modality in fp32/fp16 with and without activation checkpointing (does 112³
# fit 12 GB?), and the all-15-subset evaluation against 15 separate passes. About 4 minutes of device time.
#
# Prepare (here, with network):   bash ../shared/tools/device-wheels.sh     # wheels into ./.whl (git-ignored)
# On the lent GPU:                run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=420)
# CPU fallback (tests the script): DEVICE=cpu SIZE=32 WIDTHS=4,8,16,32 bash bench/gpu_check.sh
#
# Overrides: DEVICE (cuda), SIZE (112), WIDTHS (16,32,64,128), BS (1), REPEATS (5), EVAL_SIZE (SIZE), ROI (SIZE),
# COMPILE=1 (adds a torch.compile run; compiling takes minutes), STEP_LIMIT / EVAL_LIMIT (seconds per stage).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}; SIZE=${SIZE:-112}; WIDTHS=${WIDTHS:-16,32,64,128}; BS=${BS:-1}; REPEATS=${REPEATS:-5}
EVAL_SIZE=${EVAL_SIZE:-$SIZE}; ROI=${ROI:-$SIZE}; STEP_LIMIT=${STEP_LIMIT:-150}; EVAL_LIMIT=${EVAL_LIMIT:-90}

# The device has torch but not fastai, MONAI or nibabel: install them from the carried wheels, and import cloe_nb
# from this working tree (it is not pip-installed there).
if ! python3 -c "import fastai, monai, nibabel" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
  else
    echo "gpu_check: fastai/monai/nibabel are missing and ./.whl holds no wheels; run ../shared/tools/device-wheels.sh here and carry .whl" >&2
    exit 1
  fi
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
python3 - <<'EOF' || exit 1
import torch, cloe_nb, fastai, monai
print(f"torch {torch.__version__}, fastai {fastai.__version__}, monai {monai.__version__}; "
      + (f"GPU {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB" if torch.cuda.is_available() else "no GPU"))
EOF

rc=0
stage() {  # name, limit, command...: run a stage under a time limit; a failure is reported, the next stage still runs
  local name=$1 limit=$2; shift 2
  echo; echo "== $name"
  timeout "$limit" "$@" 2>&1 | grep -v -E 'UserWarning|warnings.warn' || { echo "!! $name failed or ran past ${limit}s"; rc=1; }
}
stage "training step, bf16 autocast, ${SIZE}³, widths $WIDTHS, bs $BS (CLoE vs all-encoders)" "$STEP_LIMIT" \
  python3 bench/train_step.py --device "$DEVICE" --sizes "$SIZE" --widths "$WIDTHS" --bs "$BS" --repeats "$REPEATS" --amp bf16 --no-flops
stage "training step, fp32, ${SIZE}³ (CLoE only)" "$STEP_LIMIT" \
  python3 bench/train_step.py --device "$DEVICE" --sizes "$SIZE" --widths "$WIDTHS" --bs "$BS" --repeats "$REPEATS" --formulations cloe --no-flops
for opts in "--amp none" "--amp none --checkpoint" "--amp fp16" "--amp fp16 --checkpoint"; do   # fp16: what a T4 trains in
  stage "peak memory, every modality, ${SIZE}³, $opts (CLoE only)" "$STEP_LIMIT" \
    python3 bench/train_step.py --device "$DEVICE" --sizes "$SIZE" --widths "$WIDTHS" --bs "$BS" --repeats 2 --formulations cloe --subsets full --no-flops $opts
done
if [ "${COMPILE:-0}" = 1 ]; then
  stage "training step, bf16 + torch.compile, ${SIZE}³ (CLoE only)" 300 \
    python3 bench/train_step.py --device "$DEVICE" --sizes "$SIZE" --widths "$WIDTHS" --bs "$BS" --repeats "$REPEATS" --formulations cloe --amp bf16 --compile --no-flops
fi
stage "15-subset evaluation vs 15 separate passes, ${EVAL_SIZE}³ volume, roi $ROI" "$EVAL_LIMIT" \
  python3 bench/eval_subsets.py --device "$DEVICE" --grid "$WIDTHS:$EVAL_SIZE:$ROI" --repeats 2
exit $rc
