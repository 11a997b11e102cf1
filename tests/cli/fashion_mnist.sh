#!/usr/bin/env bash
# `unidiff data fashion-mnist` against the Debian package's files read independently with Python's
# gzip: 60,000 train / 10,000 test images, 28x28 (32x32 with --pad=2), the same pixels and the same
# class counts; shards read back as the whole set; a failed conversion leaves no output file.
set -euo pipefail
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  # Machines set up by scripts/setup.sh have it; the GPU host has no Debian packages.
  echo "SKIP: Debian's dataset-fashion-mnist is not installed here"; exit 77
fi
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$bin" data fashion-mnist --split=train --out="$tmp/train.h5"
"$bin" data fashion-mnist --split=test --pad=2 --shards=3 --out="$tmp/test.h5"
set +e
"$bin" data fashion-mnist --split=dev --out="$tmp/bad.h5" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "unknown --split 'dev' (valid: train, test)" "$tmp/err"
set +e
"$bin" data fashion-mnist --fashion_mnist_dir="$tmp/nowhere" --out="$tmp/bad.h5" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "does not exist" "$tmp/err"
[ ! -e "$tmp/bad.h5" ]
"$UNIDIFF_PYTHON" - "$tmp" <<'PY'
import gzip, glob, sys
import h5py, numpy as np
d = sys.argv[1]
src = "/usr/share/datasets/fashion-mnist"
def idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)
ti = idx(f"{src}/train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
tl = idx(f"{src}/train-labels-idx1-ubyte.gz", 8)
vi = idx(f"{src}/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
vl = idx(f"{src}/t10k-labels-idx1-ubyte.gz", 8)
with h5py.File(f"{d}/train.h5") as f:
    x, y = f["data"][:], f["labels"][:]
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.uint8, x.shape
    assert f["labels"].attrs["num_classes"] == 10
assert (x[:, 0] == ti).all() and (y == tl).all()
assert (np.bincount(y, minlength=10) == np.bincount(tl, minlength=10)).all()
shards = sorted(glob.glob(f"{d}/test-*-of-00003.h5"))
assert len(shards) == 3, shards
x = np.concatenate([h5py.File(s)["data"][:] for s in shards])
y = np.concatenate([h5py.File(s)["labels"][:] for s in shards])
assert x.shape == (10000, 1, 32, 32), x.shape
assert (x[:, 0, 2:30, 2:30] == vi).all() and (x[:, 0, :2] == 0).all() and (y == vl).all()
print("fashion-mnist: train", np.bincount(tl).tolist(), "test", np.bincount(vl).tolist())
PY
echo "fashion-mnist: all checks passed"
