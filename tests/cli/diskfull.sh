#!/usr/bin/env bash
# A full disk during a save: the job exits 1 (not SIGSEGV from HDF5's exit handler) with a message
# naming the checkpoint, the file, the room left and the last complete checkpoint; that checkpoint
# is intact (`latest` still names it, the unfinished folder and temporary files are gone), and once
# there is room again the run resumes from it and ends bit for bit equal to an uninterrupted run.
# On 1 rank and under mpirun -np 2. The run directory lives on a small tmpfs the test mounts (root
# only: the test is skipped, exit 77, where mounting is not permitted).
set -euo pipefail
bin=$UNIDIFF_BIN
tmp=$(mktemp -d)
mnt="$tmp/mnt"
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=8m tmpfs "$mnt" 2>/dev/null; then
  echo "SKIP: cannot mount a tmpfs here (needs root)"; rm -rf "$tmp"; exit 77
fi
trap 'umount "$mnt" 2>/dev/null; rm -rf "$tmp"' EXIT
. "$(dirname "$0")/expect.sh"
. "$(dirname "$0")/compare_runs.sh"
mpi=("$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
"$bin" data toy --dist=moons --num=2000 --seed=1 --out="$tmp/d.h5" >/dev/null 2>&1
common=(--data="$tmp/d.h5" --data_batch=64 --model_hidden=64 --model_layers=2 --log_every=10 --threads=1
        --train_steps=30 --save_every=10)

for np in 1 2; do
  launch=("$bin")
  [ $np -gt 1 ] && launch=("${mpi[@]}" -np $np "$bin")
  run="$mnt/run$np"
  "${launch[@]}" train "${common[@]}" --run_dir="$tmp/straight$np" >/dev/null 2>&1
  rc=0; "${launch[@]}" train "${common[@]}" --train_stop_at=10 --run_dir="$run" >/dev/null 2>&1 || rc=$?
  [ $rc -eq 75 ] || fail "np $np: the first part exited $rc, expected 75"
  [ "$(cat "$run/checkpoints/latest")" = "step-000000010" ] || fail "np $np: no first checkpoint"
  # Leave a quarter of one checkpoint's size free: the next save cannot fit.
  size_kb=$(du -sk "$run/checkpoints/step-000000010" | cut -f1)
  free_kb=$(df -k --output=avail "$mnt" | tail -1 | tr -d ' ')
  dd if=/dev/zero of="$mnt/filler" bs=1k count=$((free_kb - size_kb / 4)) 2>/dev/null || true
  md5_before=$(cd "$run/checkpoints/step-000000010" && md5sum * | sort)
  expect 1 "saving checkpoint step-000000020 failed; the last complete checkpoint, step-000000010, is intact: writing '.*step-000000020/(shard-0000[01]|manifest)\.h5' failed \(its file system has [0-9]+ KiB free\)" \
    -- "${launch[@]}" train "${common[@]}" --run_dir="$run"
  if grep -qi "segmentation\|signal 11" "$expect_out"; then cat "$expect_out"; fail "np $np: crashed"; fi
  [ "$(cat "$run/checkpoints/latest")" = "step-000000010" ] || fail "np $np: latest moved"
  [ "$(cd "$run/checkpoints/step-000000010" && md5sum * | sort)" = "$md5_before" ] || fail "np $np: the last checkpoint changed"
  [ ! -e "$run/checkpoints/step-000000020" ] || fail "np $np: the unfinished step-000000020 is left"
  if find "$run" -name '.*.tmp*' | grep -q .; then fail "np $np: temporary files left"; fi
  rm -f "$mnt/filler"
  "${launch[@]}" train "${common[@]}" --run_dir="$run" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "np $np: resume"; }
  grep -q "resumed from .*step-000000010" "$tmp/out" || fail "np $np: did not resume from step 10"
  compare "$tmp/straight$np" "$run" exact
done
echo "diskfull: all checks passed"
