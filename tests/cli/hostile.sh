#!/usr/bin/env bash
# Hostile files: each is refused with exit 2 and one line naming the file and the field, before
# anything is allocated by the sizes it declares (a regression would allocate gigabytes or return
# NaN with exit 0, and fail here on the exit code or the message):
#   - datasets declaring far more than they store ([2^28, 2] in a few KB, chunks never written),
#     read by train, streamed by train --data_stream, and read by eval;
#   - a labels attribute num_classes = 10^7;
#   - model files with layers = 10^6, num_classes = 10^7, NaN weights;
#   - mixtures with means of 1e300 or a declared D of 10^6 never written;
#   - --diffusion_steps beyond the schedule's reach (alpha-bar underflowing, or 10^8 steps);
#   - checkpoints/latest pointing outside the run directory (not followed);
#   - flagfiles including themselves without end, and a NUL byte in a flagfile line;
#   - a streamed dataset truncated under a running job (1 rank) or replaced by another file (a
#     rename over it, `mpirun -np 2`): exit 2 naming the file and the change, no SIGBUS.
set -euo pipefail
bin=$UNIDIFF_BIN
py=$UNIDIFF_PYTHON
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/expect.sh"
"$bin" data toy --dist=moons --num=400 --seed=1 --out="$tmp/ok.h5" >/dev/null 2>&1
small=(--data_batch=40 --train_steps=2 --log_every=1 --model_hidden=16 --threads=1)
"$bin" train "${small[@]}" --data="$tmp/ok.h5" --run_dir="$tmp/model" >/dev/null 2>&1
"$py" - "$tmp" <<'PY'
import sys, shutil, h5py, numpy as np
d = sys.argv[1]
with h5py.File(f"{d}/sparse.h5", "w") as f:          # declares 2 GiB, stores nothing
    f.create_dataset("data", shape=(2**28, 2), dtype="float32", chunks=(1024, 2))
with h5py.File(f"{d}/sparse_labels.h5", "w") as f:   # good data, labels declared far beyond it
    f["data"] = np.zeros((400, 2), np.float32)
    f.create_dataset("labels", shape=(2**30,), dtype="int64", chunks=(4096,))
with h5py.File(f"{d}/classes.h5", "w") as f:
    f["data"] = np.zeros((400, 2), np.float32)
    f["labels"] = np.zeros(400, np.int64)
    f["labels"].attrs["num_classes"] = 10**7
for name, key, value in (("layers", "layers", 10**6), ("classes", "num_classes", 10**7)):
    shutil.copy(f"{d}/model/model.h5", f"{d}/model_{name}.h5")
    with h5py.File(f"{d}/model_{name}.h5", "a") as f:
        f.attrs[key] = value
shutil.copy(f"{d}/model/model.h5", f"{d}/model_nan.h5")
with h5py.File(f"{d}/model_nan.h5", "a") as f:
    for g in ("params", "ema"):
        k = sorted(f[g])[0]
        f[g][k][...] = np.nan
with h5py.File(f"{d}/gmm_huge.h5", "w") as f:
    f["weights"] = np.ones(2)
    f["means"] = np.array([[1e300, 0.0], [0.0, 0.0]])
    f["stds"] = np.ones((2, 2))
with h5py.File(f"{d}/gmm_sparse.h5", "w") as f:
    f["weights"] = np.ones(1)
    f.create_dataset("means", shape=(1, 10**6), dtype="float64", chunks=(1, 4096))
    f.create_dataset("stds", shape=(1, 10**6), dtype="float64", chunks=(1, 4096))
PY
sparse="dataset /data in '.*sparse.h5' declares \[268435456, 2\] float32 \(2.0 GiB\) but the file stores 0 bytes"
expect 2 "$sparse" -- "$bin" train "${small[@]}" --data="$tmp/sparse.h5" --run_dir="$tmp/r1"
expect 2 "$sparse" -- "$bin" train "${small[@]}" --data="$tmp/sparse.h5" --data_stream --run_dir="$tmp/r2"
expect 2 "$sparse" -- "$bin" eval --samples="$tmp/sparse.h5" --reference="$tmp/ok.h5"
expect 2 "dataset /labels in '.*sparse_labels.h5' declares \[1073741824\] int64" -- "$bin" train "${small[@]}" \
  --data="$tmp/sparse_labels.h5" --run_dir="$tmp/r3"
expect 2 "'.*classes.h5' /labels attribute num_classes = 10000000 is out of range" -- "$bin" train "${small[@]}" \
  --data="$tmp/classes.h5" --run_dir="$tmp/r4"
expect 2 "'.*model_layers.h5' has a bad attribute layers: must be at most 1024" -- "$bin" sample \
  --checkpoint="$tmp/model_layers.h5" --num=4 --out="$tmp/s.h5"
expect 2 "'.*model_classes.h5' has a bad attribute num_classes: must be at most 1000000 \(got 10000000\)" -- "$bin" sample \
  --checkpoint="$tmp/model_classes.h5" --num=4 --out="$tmp/s.h5"
expect 2 "'.*model_nan.h5' tensor /ema/.* holds non-finite values" -- "$bin" sample \
  --checkpoint="$tmp/model_nan.h5" --num=4 --out="$tmp/s.h5"
expect 2 "'.*model_nan.h5' tensor /ema/.* holds non-finite values" -- "$bin" train "${small[@]}" \
  --data="$tmp/ok.h5" --init_from="$tmp/model_nan.h5" --run_dir="$tmp/r5"
expect 2 "mixture file '.*gmm_huge.h5': mixture means must lie within" -- "$bin" sample --model=gmm \
  --gmm_file="$tmp/gmm_huge.h5" --num=4 --out="$tmp/s.h5"
expect 2 "dataset /(means|stds) in '.*gmm_sparse.h5' declares \[1, 1000000\] float64" -- "$bin" sample --model=gmm \
  --gmm_file="$tmp/gmm_sparse.h5" --num=4 --out="$tmp/s.h5"
expect 2 "the linear schedule over T = 90000 steps .* drives alpha-bar to [0-9.e+-]+ at the last step" -- "$bin" train "${small[@]}" --data="$tmp/ok.h5" \
  --diffusion_steps=90000 --run_dir="$tmp/r6"
expect 2 "--diffusion_steps.*must be at most 100000" -- "$bin" train "${small[@]}" --data="$tmp/ok.h5" \
  --diffusion_steps=100000000 --run_dir="$tmp/r7"
# checkpoints/latest naming a path outside the run directory is not followed: the newest step-N
# folder beside it is taken instead, and the run says so.
echo "../../../etc" >"$tmp/model/checkpoints/latest"
expect 0 "'latest' must name a step-N folder beside it, not '../../../etc'.*" -- "$bin" train "${small[@]}" \
  --data="$tmp/ok.h5" --train_steps=3 --run_dir="$tmp/model"
grep -q "resumed from .*model/checkpoints/step-000000002" "$expect_out" || fail "latest's fallback did not resume"
# Flagfiles: one that includes itself is stopped by the depth bound (8); four levels each
# including the next 20 times (8,421 reads) by the bound on files read in all; a NUL byte in a
# line is refused (it would silently cut the flag).
for _ in $(seq 20); do echo "--flagfile=$tmp/loop.flags"; done >"$tmp/loop.flags"
expect 2 "--flagfile nesting deeper than 8 levels at flagfile '.*loop.flags'" -- "$bin" train --flagfile="$tmp/loop.flags"
echo "# the leaves" >"$tmp/fan3.flags"
for k in 2 1 0; do for _ in $(seq 20); do echo "--flagfile=$tmp/fan$((k + 1)).flags"; done >"$tmp/fan$k.flags"; done
expect 2 "--flagfile '.*fan3.flags': more than 1000 flagfiles read in all" -- "$bin" train --flagfile="$tmp/fan0.flags"
printf -- '--train_steps=5\0junk\n' >"$tmp/nul.flags"
expect 2 "--flagfile '.*nul.flags' line 1 holds a NUL byte" -- "$bin" train --flagfile="$tmp/nul.flags"
# A streamed dataset changed under a running job.
"$bin" data toy --dist=moons --num=20000 --seed=1 --out="$tmp/stream.h5" >/dev/null 2>&1
cp "$tmp/stream.h5" "$tmp/other.h5"
long=(--data="$tmp/stream.h5" --data_stream --data_batch=64 --model_hidden=16 --train_steps=10000000
      --log_every=20 --threads=1)
change_under_run() {  # change_under_run RUN_DIR COMMAND... (the change is made when the run has logged)
  local run=$1; shift
  "$@" >"$tmp/stream.out" 2>&1 &
  local job=$! rc=0
  for _ in $(seq 600); do [ -s "$run/metrics.jsonl" ] && break; sleep 0.05; done
  [ -s "$run/metrics.jsonl" ] || fail "the streaming run did not start"
  eval "$change"
  wait $job || rc=$?
  stream_rc=$rc
}
change='truncate -s 4096 "$tmp/stream.h5"'
change_under_run "$tmp/s1" "$bin" train "${long[@]}" --run_dir="$tmp/s1"
[ $stream_rc -eq 2 ] || { cat "$tmp/stream.out"; fail "a truncated streamed file: exit $stream_rc, expected 2"; }
grep -q "error: '.*stream.h5' changed while the run was reading it (it shrank from [0-9]* to 4096 bytes)" "$tmp/stream.out" \
  || { cat "$tmp/stream.out"; fail "the truncation is not named"; }
"$bin" data toy --dist=moons --num=20000 --seed=1 --out="$tmp/stream.h5" >/dev/null 2>&1
change='mv "$tmp/other.h5" "$tmp/stream.h5"'
change_under_run "$tmp/s2" "$MPIEXEC" --oversubscribe --bind-to none -np 2 "$bin" train "${long[@]}" --run_dir="$tmp/s2"
[ $stream_rc -eq 2 ] || { cat "$tmp/stream.out"; fail "a replaced streamed file: exit $stream_rc, expected 2"; }
grep -q "error: '.*stream.h5' changed while the run was reading it (it was replaced by another file)" "$tmp/stream.out" \
  || { cat "$tmp/stream.out"; fail "the replacement is not named"; }
if grep -qi "bus error\|SIGBUS" "$tmp/stream.out"; then fail "a changed streamed file raised SIGBUS"; fi

for r in r1 r2 r3 r4 r5 r6 r7; do [ ! -e "$tmp/$r" ] || fail "a refused run created $r"; done
echo "hostile: all checks passed"
