#!/usr/bin/env bash
# The CPU table of the performance page (issue 8): training step seconds, peak memory and FLOPs at 64³/96³/112³ with
# RFNet's widths (16-32-64-128), batch 1, CLoE beside the all-encoders-always formulation under uniform subset
# sampling; then the memory of a 112³ step with every modality (the worst case) in fp32/bf16, with and without
# activation checkpointing. About 40 minutes and up to ~15 GB of RAM on 2 cores; prints the tables.
#
#   bash bench/cpu_table.sh | tee bench/results/cpu-$(date +%F).txt
#
# REPEATS overrides the number of timed steps per subset size (2). Each configuration runs in a fresh process, so
# a section can be rerun alone (e.g. after a busy spell on a shared machine) and its block replaced in the printout.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${REPEATS:-2}
run() { python bench/train_step.py --widths 16,32,64,128 --bs 1 --repeats "$R" "$@" 2>&1 | grep -v -E 'UserWarning|warnings.warn'; echo; }
echo "== step, memory and FLOPs, uniform subsets, fp32"
run --sizes 64,96
echo "== 112³, uniform subsets, fp32, activation checkpointing"
run --sizes 112 --checkpoint
echo "== memory of a 112³ step with every modality (CLoE): checkpointing and bf16 autocast"
run --sizes 96 --formulations cloe --subsets full --no-flops
run --sizes 112 --formulations cloe --subsets full --no-flops
run --sizes 112 --formulations cloe --subsets full --no-flops --checkpoint
run --sizes 112 --formulations cloe --subsets full --no-flops --amp bf16
run --sizes 112 --formulations cloe --subsets full --no-flops --amp bf16 --checkpoint
