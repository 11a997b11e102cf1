#!/usr/bin/env bash
# The distillation methods' contract, from the shared toy teacher (toy_teacher.sh):
# - every group (generator, the frozen real score, the fake score, the discriminator head) and both
#   time scales resume bit for bit mid-run: DMD2 with a two-step generator and 2 fake-score updates
#   per step stopped and resumed on 2 ranks ends equal to the straight run, checkpoint tensor for
#   checkpoint tensor; resumed on 1 rank, and run straight on 1 rank, it ends equal to rounding;
#   ADD the same on 1 rank;
#   consistency distillation's student and target network resume bit for bit on 2 ranks;
# - the result samples with its own sampler by default (lcm at the generator's steps);
# - misuse is refused before anything is written: another method's flags, a teacher that is not a
#   DDPM model, regression without pairs, pairs drawn by a stochastic sampler.
#   distill.sh TEACHER_DIR
set -euo pipefail
teacher=$1/teacher
data=$1/data.h5
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/expect.sh"
mpi=("$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
. "$(dirname "$0")/compare_runs.sh"
dmd=(--flagfile="$UNIDIFF_SOURCE_DIR/experiments/recipes/toy2d_dmd.flags" --teacher="$teacher" --data="$data"
     --dmd_generator_steps=2 --dmd_fake_updates=2 --dmd_backward_sim=uniform --data_batch=96 --train_steps=24
     --log_every=6 --threads=1)
"${mpi[@]}" -np 2 "$bin" train "${dmd[@]}" --run_dir="$tmp/dmd-straight2" >/dev/null 2>&1
rc=0; "${mpi[@]}" -np 2 "$bin" train "${dmd[@]}" --train_stop_at=10 --run_dir="$tmp/dmd-r2" >/dev/null 2>&1 || rc=$?
[ $rc -eq 75 ] || fail "the DMD2 stop exited $rc, expected 75"
expect 0 "resumed from .*step-000000010" -- "${mpi[@]}" -np 2 "$bin" train "${dmd[@]}" --run_dir="$tmp/dmd-r2"
compare "$tmp/dmd-straight2" "$tmp/dmd-r2" exact
rc=0; "${mpi[@]}" -np 2 "$bin" train "${dmd[@]}" --train_stop_at=10 --run_dir="$tmp/dmd-r21" >/dev/null 2>&1 || rc=$?
[ $rc -eq 75 ] || fail "the DMD2 stop exited $rc, expected 75"
"$bin" train "${dmd[@]}" --run_dir="$tmp/dmd-r21" >/dev/null 2>&1
compare "$tmp/dmd-straight2" "$tmp/dmd-r21" close
"$bin" train "${dmd[@]}" --run_dir="$tmp/dmd-straight1" >/dev/null 2>&1
compare "$tmp/dmd-straight2" "$tmp/dmd-straight1" close
expect 0 "groups:" -- "$bin" ckpt info --checkpoint="$tmp/dmd-r2"
for g in generator real fake disc; do grep -q "^    $g: " "$expect_out" || fail "the checkpoint lacks group $g"; done
expect 0 "samples with lcm, 2 of T = 1000 steps \(trailing\)" -- "$bin" sample --checkpoint="$tmp/dmd-r2" --num=64 \
  --out="$tmp/s.h5"
add=(--flagfile="$UNIDIFF_SOURCE_DIR/experiments/recipes/toy2d_add.flags" --teacher="$teacher" --data="$data"
     --data_batch=96 --train_steps=20 --log_every=5 --threads=1)
"$bin" train "${add[@]}" --run_dir="$tmp/add-straight" >/dev/null 2>&1
rc=0; "$bin" train "${add[@]}" --train_stop_at=7 --run_dir="$tmp/add-r" >/dev/null 2>&1 || rc=$?
[ $rc -eq 75 ] || fail "the ADD stop exited $rc, expected 75"
"$bin" train "${add[@]}" --run_dir="$tmp/add-r" >/dev/null 2>&1
compare "$tmp/add-straight" "$tmp/add-r" exact
# Consistency distillation: the student, its target network (EMA) and the data position resume bit
# for bit on 2 ranks, mid-run; the result samples with lcm at --cd_sample_steps by default.
cd=(--flagfile="$UNIDIFF_SOURCE_DIR/experiments/recipes/toy2d_cd.flags" --teacher="$teacher" --data="$data"
    --data_batch=96 --train_steps=16 --log_every=4 --threads=1)
"${mpi[@]}" -np 2 "$bin" train "${cd[@]}" --run_dir="$tmp/cd-straight" >/dev/null 2>&1
rc=0; "${mpi[@]}" -np 2 "$bin" train "${cd[@]}" --train_stop_at=6 --run_dir="$tmp/cd-r" >/dev/null 2>&1 || rc=$?
[ $rc -eq 75 ] || fail "the CD stop exited $rc, expected 75"
expect 0 "resumed from .*step-000000006" -- "${mpi[@]}" -np 2 "$bin" train "${cd[@]}" --run_dir="$tmp/cd-r"
compare "$tmp/cd-straight" "$tmp/cd-r" exact
expect 0 "groups:" -- "$bin" ckpt info --checkpoint="$tmp/cd-r"
for g in student teacher target; do grep -q "^    $g: " "$expect_out" || fail "the CD checkpoint lacks group $g"; done
expect 0 "samples with lcm, 2 of T = 1000 steps \(trailing, on the 50-step grid\)" -- "$bin" sample --checkpoint="$tmp/cd-r" --num=64 \
  --out="$tmp/s.h5"
expect 2 "--cd_teacher_steps 60 exceeds the grid.s 50 intervals" -- "$bin" train "${cd[@]}" --cd_teacher_steps=60 \
  --run_dir="$tmp/bad"
expect 2 "unknown --cd_loss 'l1' \(valid: l2, huber\)" -- "$bin" train "${cd[@]}" --cd_loss=l1 --run_dir="$tmp/bad"
# Misuse, refused before the run directory exists.
expect 2 "--dmd_gan_weight is a flag of --method=dmd; this run's method is vsd" -- "$bin" train --method=vsd \
  --teacher="$teacher" --data="$data" --dmd_gan_weight=0.1 --run_dir="$tmp/bad"
"$bin" train --objective=rf --data="$data" --data_batch=64 --train_steps=2 --run_dir="$tmp/rf" >/dev/null 2>&1
expect 2 "--method=dmd distils a DDPM teacher; '.*rf' is a rf model" -- "$bin" train --method=dmd --teacher="$tmp/rf" \
  --data="$data" --run_dir="$tmp/bad"
expect 2 "--dmd_regression_weight > 0 and --dmd_pairs go together" -- "$bin" train --method=dmd --teacher="$teacher" \
  --data="$data" --dmd_regression_weight=0.5 --run_dir="$tmp/bad"
"$bin" sample --checkpoint="$teacher" --sampler=ddim --eta=1 --steps=10 --num=64 --out="$tmp/noisy.h5" >/dev/null 2>&1
expect 2 "a stochastic sampler's sample is not a function of its noise; --dmd_pairs takes pairs of a deterministic one" -- "$bin" train --method=dmd --teacher="$teacher" \
  --data="$data" --dmd_regression_weight=0.5 --dmd_pairs="$tmp/noisy.h5" --data_batch=64 --run_dir="$tmp/bad"
[ ! -e "$tmp/bad" ] || fail "a refused run created its directory"
echo "distill: all checks passed"
