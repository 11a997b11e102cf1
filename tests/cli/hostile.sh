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
# The matrix, continued (each file with one field wrong): datasets with samples of no values, labels
# of 2^63 - 1, negative, of another length or float type, 1-D or int64 /data, 3-D uint8 images, shards
# of different shapes, num_classes a string or an array, no /data; model files with a string step,
# an array of layers, a missing EMA tensor; mixtures with negative stds, mismatched shapes, a NaN
# weight; checkpoint manifests with float shard sizes, a 2^41-element shape, a piece of rank 5 of 1,
# overlapping pieces, an unknown dtype, pieces not [k, 3]; a flagfile name too long for the system.
# 41 refusals in all here, plus the run-directory, divergence, stall and disk-full cases of cli,
# cli_checkpoint, dist_stall and cli_diskfull.
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
# --- The matrix, continued: one file, one field, one line each ----------------------------------
"$bin" train "${small[@]}" --data="$tmp/ok.h5" --save_every=2 --run_dir="$tmp/ckpt" >/dev/null 2>&1
"$py" - "$tmp" <<'PY'
import sys, shutil, h5py, numpy as np
d = sys.argv[1]
def data(name, x, **labels):
    with h5py.File(f"{d}/{name}.h5", "w") as f:
        f["data"] = x
        for k, v in labels.items():
            f[k] = v
good = np.zeros((400, 2), np.float32)
data("zero_width", np.zeros((400, 0), np.float32))
data("label_max", good, labels=np.full(400, 2**63 - 1, np.int64))
data("label_neg", good, labels=np.full(400, -3, np.int64))
data("label_len", good, labels=np.zeros(399, np.int64))
data("label_float", good, labels=np.zeros(400, np.float32))
data("one_dim", np.zeros(400, np.float32))
data("int_data", np.zeros((400, 2), np.int64))
data("uint8_3d", np.zeros((400, 8, 8), np.uint8))
data("other_shape", np.zeros((400, 3), np.float32))
for name, value in (("nc_string", np.bytes_("ten")), ("nc_array", np.array([10, 10]))):
    data(name, good, labels=np.zeros(400, np.int64))
    with h5py.File(f"{d}/{name}.h5", "a") as f:
        f["labels"].attrs["num_classes"] = value
with h5py.File(f"{d}/no_data.h5", "w") as f:
    f["x"] = good
for name, key, value in (("step_string", "step", np.bytes_("two")), ("layers_array", "layers", np.array([2, 2]))):
    shutil.copy(f"{d}/model/model.h5", f"{d}/model_{name}.h5")
    with h5py.File(f"{d}/model_{name}.h5", "a") as f:
        f.attrs[key] = value
shutil.copy(f"{d}/model/model.h5", f"{d}/model_missing.h5")
with h5py.File(f"{d}/model_missing.h5", "a") as f:
    del f["ema"][sorted(f["ema"])[0]]
def gmm(name, w, m, s):
    with h5py.File(f"{d}/{name}.h5", "w") as f:
        f["weights"], f["means"], f["stds"] = w, m, s
gmm("gmm_negstd", np.ones(2) / 2, np.zeros((2, 2)), -np.ones((2, 2)))
gmm("gmm_shape", np.ones(2) / 2, np.zeros((2, 2)), np.ones((3, 2)))
gmm("gmm_nanweight", np.array([np.nan, 1.0]), np.zeros((2, 2)), np.ones((2, 2)))
# Checkpoints: a copy of step 2 per case, its manifest edited.
src = f"{d}/ckpt/checkpoints/step-000000002"
def ckpt(name, edit):
    dst = f"{d}/ck_{name}/checkpoints/step-000000002"
    shutil.copytree(src, dst)
    with h5py.File(f"{dst}/manifest.h5", "a") as f:
        edit(f)
first = lambda f: "tensors/" + sorted(f["tensors"])[0] if "shape" in f["tensors"][sorted(f["tensors"])[0]] else None
def tensor(f):
    name = []
    f["tensors"].visit(lambda n: name.append(n[:-6]) if n.endswith("/shape") else None)
    return "tensors/" + sorted(name)[0]
def replace(f, path, value):
    del f[path]
    f[path] = value
ckpt("float_sizes", lambda f: replace(f, "shards/size", f["shards/size"][...].astype(np.float64)))
ckpt("huge_shape", lambda f: replace(f, tensor(f) + "/shape", np.array([2**41], np.int64)))
ckpt("bad_rank", lambda f: replace(f, tensor(f) + "/pieces", np.array([[5, 0, 1]], np.int64)))
def overlap(f):
    t = tensor(f)
    n = int(np.prod(f[t + "/shape"][...]))
    replace(f, t + "/pieces", np.array([[0, 0, n - 1], [0, 0, 1]], np.int64))
ckpt("overlap", overlap)
ckpt("dtype", lambda f: f[tensor(f)].attrs.__setitem__("dtype", "complex128"))
ckpt("pieces_shape", lambda f: replace(f, tensor(f) + "/pieces", np.array([0, 0], np.int64)))
PY
expect 2 "'.*zero_width.h5' /data has samples of no values \(dimension 1 of its shape is 0\)" -- "$bin" train "${small[@]}" --data="$tmp/zero_width.h5" --run_dir="$tmp/m1"
expect 2 "'.*label_max.h5' /labels largest label \+ 1 = 1000001 is out of range" -- "$bin" train "${small[@]}" --data="$tmp/label_max.h5" --run_dir="$tmp/m2"
expect 2 "'.*label_neg.h5' /labels range \[-3, -3\] holds negative labels" -- "$bin" train "${small[@]}" --data="$tmp/label_neg.h5" --run_dir="$tmp/m3"
expect 2 "'.*label_len.h5' /labels must be \[N\] with N = 400" -- "$bin" train "${small[@]}" --data="$tmp/label_len.h5" --run_dir="$tmp/m4"
expect 2 "'.*label_float.h5' /labels has type .* \(expected int64\)" -- "$bin" train "${small[@]}" --data="$tmp/label_float.h5" --run_dir="$tmp/m5"
expect 2 "'.*one_dim.h5' /data must be \[N, ...\] with at least 2 dimensions" -- "$bin" train "${small[@]}" --data="$tmp/one_dim.h5" --run_dir="$tmp/m6"
expect 2 "'.*int_data.h5' /data has unsupported type" -- "$bin" train "${small[@]}" --data="$tmp/int_data.h5" --run_dir="$tmp/m7"
expect 2 "'.*uint8_3d.h5' uint8 /data must be images \[N, C, H, W\]" -- "$bin" train "${small[@]}" --data="$tmp/uint8_3d.h5" --run_dir="$tmp/m8"
expect 2 "shard '.*other_shape.h5' differs from '.*ok.h5' in sample shape" -- "$bin" train "${small[@]}" --data="$tmp/ok.h5,$tmp/other_shape.h5" --data_stream --run_dir="$tmp/m9"
expect 2 "'.*nc_string.h5' attribute 'num_classes' of /labels is not a number" -- "$bin" train "${small[@]}" --data="$tmp/nc_string.h5" --run_dir="$tmp/m10"
expect 2 "'.*nc_array.h5' attribute 'num_classes' of /labels holds 2 values, expected one" -- "$bin" train "${small[@]}" --data="$tmp/nc_array.h5" --run_dir="$tmp/m11"
expect 2 "'.*no_data.h5' has no /data dataset" -- "$bin" train "${small[@]}" --data="$tmp/no_data.h5" --run_dir="$tmp/m12"
expect 2 "'.*model_step_string.h5' attribute 'step' of / is not a number" -- "$bin" sample --checkpoint="$tmp/model_step_string.h5" --num=4 --out="$tmp/s.h5"
expect 2 "'.*model_layers_array.h5' attribute 'layers' of / holds 2 values, expected one" -- "$bin" sample --checkpoint="$tmp/model_layers_array.h5" --num=4 --out="$tmp/s.h5"
expect 2 "'.*model_missing.h5' lacks tensor /ema/input.bias" -- "$bin" sample --checkpoint="$tmp/model_missing.h5" --num=4 --out="$tmp/s.h5"
expect 2 "mixture file '.*gmm_negstd.h5'.*std" -- "$bin" sample --model=gmm --gmm_file="$tmp/gmm_negstd.h5" --num=4 --out="$tmp/s.h5"
expect 2 "mixture file '.*gmm_shape.h5'.*(shape|stds)" -- "$bin" sample --model=gmm --gmm_file="$tmp/gmm_shape.h5" --num=4 --out="$tmp/s.h5"
expect 2 "mixture file '.*gmm_nanweight.h5'.*weights" -- "$bin" sample --model=gmm --gmm_file="$tmp/gmm_nanweight.h5" --num=4 --out="$tmp/s.h5"
ck() { echo "$tmp/ck_$1/checkpoints/step-000000002"; }
expect 2 "'.*ck_float_sizes/.*manifest.h5' /shards/size must hold integers" -- "$bin" ckpt info --checkpoint="$(ck float_sizes)"
expect 2 "'.*ck_huge_shape/.*manifest.h5' /tensors/.*/shape declares an impossible size" -- "$bin" ckpt info --checkpoint="$(ck huge_shape)"
expect 2 "'.*ck_bad_rank/.*manifest.h5' /tensors/.*/pieces row 0 \(5, 0, 1\) is out of range \(1 ranks" -- "$bin" ckpt info --checkpoint="$(ck bad_rank)"
expect 2 "checkpoint tensor .*'s pieces overlap or leave a gap at element" -- "$bin" ckpt info --checkpoint="$(ck overlap)"
expect 2 "unsupported dtype 'complex128' in a checkpoint manifest" -- "$bin" ckpt info --checkpoint="$(ck dtype)"
expect 2 "'.*ck_pieces_shape/.*manifest.h5' /tensors/.*/pieces must be \[k, 3\]" -- "$bin" ckpt info --checkpoint="$(ck pieces_shape)"
expect 2 "--flagfile '/x{300}' does not exist or is not a file \(File name too long\)" -- "$bin" train --flagfile="/$(printf 'x%.0s' $(seq 300))"
for r in m1 m2 m3 m4 m5 m6 m7 m8 m9 m10 m11 m12; do [ ! -e "$tmp/$r" ] || fail "a refused run created $r"; done

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
