#!/usr/bin/env bash
# The cost of a distribution-matching step: a DMD2 step (K fake-score and discriminator updates, one
# generator update, each drawing generator samples) against (1 + K) pre-training steps of the same
# network in the same invocation, and the bytes each group holds (the run's "groups:" line: a frozen
# teacher holds weights only, half of them in bf16). Timings from metrics.jsonl's steps_per_s after
# a warm-up window.
#   distill_step.sh [BUILD_DIR] [toy|unet]
set -euo pipefail
build=${1:-build}
net=${2:-toy}
bin=$build/launcher/unidiff
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
K=5
if [ "$net" = toy ]; then
  "$bin" data toy --dist=moons --num=20000 --seed=1 --out="$tmp/data.h5" >/dev/null
  arch=(--model_arch=mlp --model_hidden=128 --model_layers=3 --prediction=v --data_batch=512)
  steps=60
else
  "$bin" data fashion-mnist --split=test --pad=2 --out="$tmp/data.h5" >/dev/null
  arch=(--model_arch=unet --model_channels=32 --model_mult=1,2,2 --model_res_blocks=1 --model_attn_res=8
        --model_dropout=0 --prediction=v --data_batch=32)
  steps=6
fi
rate() { "${PYTHON:-python3}" -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(r[-1]['steps_per_s'])" "$1"; }
"$bin" train "${arch[@]}" --data="$tmp/data.h5" --train_steps=$((2 * (1 + K) * steps)) --log_every=$(((1 + K) * steps)) \
  --run_dir="$tmp/teacher" >/dev/null 2>&1
pre=$(rate "$tmp/teacher/metrics.jsonl")
rows=""
for dtype in fp32 bf16; do
  "$bin" train --method=dmd --teacher="$tmp/teacher" --data="$tmp/data.h5" --data_batch="${arch[-1]#--data_batch=}" \
    --dmd_fake_updates=$K --dmd_gan_weight=0.05 --teacher_dtype=$dtype --train_steps=$((2 * steps)) --log_every=$steps \
    --run_dir="$tmp/dmd-$dtype" >"$tmp/dmd-$dtype.log" 2>&1
  dmd=$(rate "$tmp/dmd-$dtype/metrics.jsonl")
  groups=$(grep -o "groups:.*" "$tmp/dmd-$dtype.log")
  rows+="| $net | $dtype | $(printf '%.4f' "$(echo "1 / $dmd" | bc -l)") s | $(printf '%.4f' "$(echo "(1 + $K) / $pre" | bc -l)") s | $(printf '%.2f' "$(echo "$pre / ((1 + $K) * $dmd)" | bc -l)") | ${groups#groups: } |"$'\n'
done
echo "| network | teacher | DMD2 step | (1 + K) pre-training steps | ratio | bytes held per group (this rank) |"
echo "|---|---|---|---|---|---|"
printf '%s' "$rows"
