#!/usr/bin/env bash
# The reward methods' contract, from the shared toy teacher (toy_teacher.sh) as the policy:
# - DDPO stopped within an epoch on 2 ranks and resumed on 2 ends equal to the straight run, every
#   checkpoint tensor (the epoch's rollouts are made again from the old policy in the checkpoint,
#   the per-class statistics come back as they were); resumed on 3 ranks, and run straight on 1,
#   it ends equal to rounding; DRWR and ReFL (with its pre-training loss on --data) the same on 2;
# - an epoch's rollouts do not depend on the ranks: the first epoch's logged mean reward is the
#   same on 1, 2 and 3 ranks, and `unidiff eval --reward` of the saved rollout files (every rank's,
#   read together as one dataset) gives it again;
# - the result samples with the rollouts' own sampler (DDIM, trailing, their eta) unless asked;
# - misuse is refused before anything is written.
#   reward.sh TEACHER_DIR
set -euo pipefail
teacher=$1/teacher
data=$1/data.h5
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/expect.sh"
mpi=("$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
. "$(dirname "$0")/compare_runs.sh"
stop() {  # stop STEP RANKS ARGS...: a run stopped after STEP (exit 75)
  local at=$1 np=$2 rc=0; shift 2
  "${mpi[@]}" -np "$np" "$bin" train "$@" --train_stop_at="$at" >/dev/null 2>&1 || rc=$?
  [ $rc -eq 75 ] || fail "the stop at $at on $np ranks exited $rc, expected 75"
}
common=(--init_from="$teacher" --data="$data" --reward=distance --reward_target=2,0.5 --rl_steps=10 --rl_eta=1
        --optim_lr=3e-4 --optim_warmup=0 --ema_decay=0.9 --log_every=2 --threads=1)
# DDPO: 96 rollouts an epoch (divisible by 1, 2 and 3 ranks), micro-batches of 24: 4 steps an
# epoch, 3 epochs; half of each sample's 9 stochastic steps trained on (keyed).
ddpo=(--method=ddpo "${common[@]}" --rl_samples=96 --rl_batch=24 --rl_epochs=3 --rl_timestep_fraction=0.5
      --rl_clip=0.2 --data_batch=24)
"${mpi[@]}" -np 2 "$bin" train "${ddpo[@]}" --rl_save_rollouts=true --run_dir="$tmp/ddpo2" >"$tmp/ddpo2.log" 2>&1 \
  || { cat "$tmp/ddpo2.log"; fail "the DDPO run failed"; }
stop 6 2 "${ddpo[@]}" --run_dir="$tmp/ddpo-r2"
expect 0 "resumed from .*step-000000006" -- "${mpi[@]}" -np 2 "$bin" train "${ddpo[@]}" --run_dir="$tmp/ddpo-r2"
compare "$tmp/ddpo2" "$tmp/ddpo-r2" exact
stop 6 2 "${ddpo[@]}" --run_dir="$tmp/ddpo-r23"
"${mpi[@]}" -np 3 "$bin" train "${ddpo[@]}" --run_dir="$tmp/ddpo-r23" >"$tmp/ddpo3.log" 2>&1
compare "$tmp/ddpo2" "$tmp/ddpo-r23" close
"$bin" train "${ddpo[@]}" --run_dir="$tmp/ddpo1" >"$tmp/ddpo1.log" 2>&1
compare "$tmp/ddpo2" "$tmp/ddpo1" close
"${mpi[@]}" -np 3 "$bin" train "${ddpo[@]}" --rl_epochs=1 --run_dir="$tmp/ddpo3" >"$tmp/ddpo3s.log" 2>&1
first() { grep -o 'epoch 1: 96 samples, reward mean [^,]*' "$1" | head -1 | awk '{print $NF}'; }
r1=$(first "$tmp/ddpo1.log"); r2=$(first "$tmp/ddpo2.log"); r3=$(first "$tmp/ddpo3s.log")
[ -n "$r1" ] && [ "$r1" = "$r2" ] && [ "$r2" = "$r3" ] || fail "epoch 1's mean reward differs: $r1 / $r2 / $r3 on 1 / 2 / 3 ranks"
expect 0 '"num_samples": 96' -- "$bin" eval --samples="$tmp/ddpo2/rollouts/epoch-000001-rank-*.h5" --reward=distance \
  --reward_target=2,0.5
"$UNIDIFF_PYTHON" - "$(tail -1 "$expect_out")" "$r2" <<'PY'
import json, sys
got, want = json.loads(sys.argv[1])["reward_mean"], float(sys.argv[2])
assert abs(got - want) <= 1e-5 * max(1, abs(want)), (got, want)
PY
test -s "$tmp/ddpo2/reward.png" || fail "no reward.png"
expect 0 "groups:" -- "$bin" ckpt info --checkpoint="$tmp/ddpo-r2"
for g in policy old_policy; do grep -q "^    $g: " "$expect_out" || fail "the checkpoint lacks group $g"; done
expect 0 "samples with ddim, 10 of T = 1000 steps \(trailing\), eta 1, " -- "$bin" sample --checkpoint="$tmp/ddpo2" \
  --num=64 --out="$tmp/s.h5"
expect 0 "samples with ddim, 10 of T = 1000 steps \(trailing\), EMA" -- "$bin" sample --checkpoint="$tmp/ddpo2" \
  --eta=0 --num=64 --out="$tmp/s0.h5"
# DRWR and ReFL (with its pre-training loss: a data stream in the checkpoint) resume bit for bit.
drwr=(--method=drwr "${common[@]}" --rl_samples=96 --rl_batch=24 --rl_epochs=3 --data_batch=24)
"${mpi[@]}" -np 2 "$bin" train "${drwr[@]}" --run_dir="$tmp/drwr2" >/dev/null 2>&1
stop 5 2 "${drwr[@]}" --run_dir="$tmp/drwr-r2"
"${mpi[@]}" -np 2 "$bin" train "${drwr[@]}" --run_dir="$tmp/drwr-r2" >/dev/null 2>&1
compare "$tmp/drwr2" "$tmp/drwr-r2" exact
refl=(--method=refl "${common[@]}" --rl_batch=32 --refl_pretrain_weight=0.5 --data_batch=32 --train_steps=10)
"${mpi[@]}" -np 2 "$bin" train "${refl[@]}" --run_dir="$tmp/refl2" >/dev/null 2>&1
stop 4 2 "${refl[@]}" --run_dir="$tmp/refl-r2"
"${mpi[@]}" -np 2 "$bin" train "${refl[@]}" --run_dir="$tmp/refl-r2" >/dev/null 2>&1
compare "$tmp/refl2" "$tmp/refl-r2" exact
# Misuse, refused before the run directory exists.
expect 2 "--method=ddpo needs stochastic steps \(--rl_eta > 0\)" -- "$bin" train "${ddpo[@]}" --rl_eta=0 \
  --run_dir="$tmp/bad"
expect 2 "--rl_samples 100 must be a multiple of --rl_batch 24" -- "$bin" train "${ddpo[@]}" --rl_samples=100 \
  --run_dir="$tmp/bad"
expect 2 "--reward=brightness takes images" -- "$bin" train "${refl[@]}" --reward=brightness --run_dir="$tmp/bad"
expect 2 "--reward_target has 3 values; the samples have 2" -- "$bin" train "${refl[@]}" --reward_target=1,2,3 \
  --run_dir="$tmp/bad"
expect 2 "--draft_k is a flag of --method=draft; this run's method is refl" -- "$bin" train "${refl[@]}" --draft_k=2 \
  --run_dir="$tmp/bad"
expect 2 "unknown --reward 'aesthetic'" -- "$bin" train "${refl[@]}" --reward=aesthetic --run_dir="$tmp/bad"
"$bin" train --objective=rf --data="$data" --data_batch=64 --train_steps=2 --run_dir="$tmp/rf" >/dev/null 2>&1
expect 2 "'.*rf' is a rf model" -- "$bin" train "${refl[@]}" --init_from="$tmp/rf" --run_dir="$tmp/bad"
[ ! -e "$tmp/bad" ] || fail "a refused run created its directory"
expect 2 "--reference \(distances\) or --reward" -- "$bin" eval --samples="$tmp/s.h5"
echo "reward: all checks passed"
