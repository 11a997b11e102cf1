#!/usr/bin/env bash
# `unidiff data images`: a folder of class sub-folders of PNG (and JPEG) files written here by an
# independent encoder (Python's zlib for PNG; libjpeg-turbo's cjpeg, decoded back by djpeg as the
# reference) -> the same pixels, labels from the sorted folder names, class names stored; resize
# and crop; every kind of bad input exits 2 naming the file, and leaves no output file behind.
set -euo pipefail
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/expect.sh"
mkdir -p "$tmp/imgs/cat" "$tmp/imgs/dog" "$tmp/imgs/emu"

# PNGs of known pixels: RGB 8-bit, grey 8-bit, RGBA (alpha composited onto black), 16-bit RGB.
"$UNIDIFF_PYTHON" - "$tmp" <<'PY'
import struct, sys, zlib
import numpy as np
d = sys.argv[1]
def png(path, arr, color_type, bit_depth=8):
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2" if bit_depth == 16 else np.uint8).tobytes() for y in range(h))
    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
rng = np.random.default_rng(0)
ref = {}
for cls, names in (("cat", ["b.png", "a.png"]), ("dog", ["x.PNG"]), ("emu", ["e.png", "f.png"])):
    for n in names:
        rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        png(f"{d}/imgs/{cls}/{n}", rgb, 2)
        ref[f"{cls}/{n}"] = rgb
np.save(f"{d}/ref.npy", np.stack([ref[k] for k in ["cat/a.png", "cat/b.png", "dog/x.PNG", "emu/e.png", "emu/f.png"]]))
# Other PNG kinds, in their own folder: grey, RGBA with alpha 0 and 255, 16-bit.
import os
os.makedirs(f"{d}/kinds/k", exist_ok=True)
grey = rng.integers(0, 256, (4, 4), dtype=np.uint8)
png(f"{d}/kinds/k/1grey.png", grey, 0)
rgba = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
rgba[..., 3] = np.where(rng.random((4, 4)) < 0.5, 0, 255)
png(f"{d}/kinds/k/2rgba.png", rgba, 6)
deep = rng.integers(0, 65536, (4, 4, 3)).astype(np.uint16)
png(f"{d}/kinds/k/3deep.png", deep, 2, 16)
np.savez(f"{d}/kinds.npz", grey=grey, rgba=rgba, deep=deep)
# A non-square image for resizing, and a PPM for cjpeg.
png(f"{d}/wide.png", rng.integers(0, 256, (8, 12, 3), dtype=np.uint8), 2)
smooth = (np.add.outer(np.arange(16) * 8, np.arange(16) * 4)[..., None] + np.array([0, 40, 80])) % 256
open(f"{d}/smooth.ppm", "wb").write(b"P6 16 16 255\n" + smooth.astype(np.uint8).tobytes())
PY

"$bin" data images --dir="$tmp/imgs" --out="$tmp/imgs.h5"
"$bin" data images --dir="$tmp/imgs" --shards=2 --out="$tmp/sharded.h5"
"$bin" data images --dir="$tmp/kinds" --out="$tmp/kinds.h5"
"$bin" data images --dir="$tmp/kinds" --channels=1 --out="$tmp/kinds1.h5"
"$UNIDIFF_PYTHON" - "$tmp" <<'PY'
import glob, sys
import h5py, numpy as np
d = sys.argv[1]
with h5py.File(f"{d}/imgs.h5") as f:
    x, y = f["/data"][...], f["/labels"][...]
    assert x.dtype == np.uint8 and x.shape == (5, 3, 6, 5), x.shape
    assert (x == np.load(f"{d}/ref.npy").transpose(0, 3, 1, 2)).all(), "pixels differ"
    assert list(y) == [0, 0, 1, 2, 2], y
    assert f["/labels"].attrs["num_classes"] == 3
    names = f["/labels"].attrs["class_names"]
    names = names.decode() if isinstance(names, bytes) else names
    assert names.split("\n") == ["cat", "dog", "emu"], names
parts = sorted(glob.glob(f"{d}/sharded-*-of-00002.h5"))
assert len(parts) == 2, parts
assert (np.concatenate([h5py.File(p)["/data"][...] for p in parts]) == x).all()
k = np.load(f"{d}/kinds.npz")
with h5py.File(f"{d}/kinds.h5") as f:
    z = f["/data"][...]
    assert "/labels" in f and z.shape == (3, 3, 4, 4)
    assert (z[0] == np.repeat(k["grey"][None], 3, 0)).all(), "grey -> RGB"
    a = k["rgba"]; want = np.where(a[..., 3:] == 255, a[..., :3], 0).transpose(2, 0, 1)
    assert (z[1] == want).all(), "alpha onto black"
    want16 = np.round(k["deep"].astype(np.float64) / 65535 * 255).astype(np.uint8).transpose(2, 0, 1)
    assert np.abs(z[2].astype(int) - want16).max() <= 1, "16-bit scaled to 8"
with h5py.File(f"{d}/kinds1.h5") as f:
    z1 = f["/data"][...]
    assert z1.shape == (3, 1, 4, 4) and (z1[0, 0] == k["grey"]).all(), "grey read as grey"
print("images: pixels, labels, class names, shards, PNG kinds ok")
PY

# Sizes: a mismatch is refused with a hint; --image_size resizes and centre-crops.
cp "$tmp/wide.png" "$tmp/imgs/dog/wide.png"
expect 2 "wide.png' is 8x12" -- "$bin" data images --dir="$tmp/imgs" --out="$tmp/bad.h5"
grep -q -- "--image_size" "$expect_out" || fail "the size refusal does not name --image_size"
[ ! -e "$tmp/bad.h5" ]
"$bin" data images --dir="$tmp/imgs" --image_size=4 --out="$tmp/small.h5"
"$UNIDIFF_PYTHON" -c "import h5py,sys; s=h5py.File(sys.argv[1])['/data'].shape; assert s == (6, 3, 4, 4), s" "$tmp/small.h5"
rm "$tmp/imgs/dog/wide.png"

# JPEG: our decode equals djpeg's (the same library's reference tool) byte for byte.
if command -v cjpeg >/dev/null && command -v djpeg >/dev/null; then
  mkdir -p "$tmp/jpg"
  cjpeg -quality 90 "$tmp/smooth.ppm" >"$tmp/jpg/smooth.jpg"
  djpeg -pnm "$tmp/jpg/smooth.jpg" >"$tmp/smooth-ref.ppm"
  set +e
  "$bin" data images --dir="$tmp/jpg" --out="$tmp/jpg.h5" 2>"$tmp/err"; rc=$?
  set -e
  if [ $rc -eq 2 ] && grep -q "no JPEG support" "$tmp/err"; then
    echo "this build has no JPEG support (libjpeg missing at configure time): the message is clear"
  else
    [ $rc -eq 0 ]
    "$UNIDIFF_PYTHON" - "$tmp" <<'PY'
import sys
import h5py, numpy as np
d = sys.argv[1]
raw = open(f"{d}/smooth-ref.ppm", "rb").read()
ref = np.frombuffer(raw[-16 * 16 * 3:], np.uint8).reshape(16, 16, 3).transpose(2, 0, 1)
x = h5py.File(f"{d}/jpg.h5")["/data"][...]
assert x.shape == (1, 3, 16, 16) and "/labels" not in h5py.File(f"{d}/jpg.h5")
assert (x[0] == ref).all(), np.abs(x[0].astype(int) - ref).max()
print("images: JPEG decode equals djpeg")
PY
  fi
else
  echo "cjpeg/djpeg not installed (libjpeg-turbo-progs): JPEG check skipped"
fi

# Bad input: exit 2, the file named, no output left.
expect_bad() {  # expect_bad PATTERN ARGS...
  local pattern=$1; shift
  expect 2 "$pattern" -- "$bin" data images "$@" --out="$tmp/bad.h5"
  [ ! -e "$tmp/bad.h5" ] || fail "a refused conversion left $tmp/bad.h5"
}
expect_bad "does not exist" --dir="$tmp/nowhere"
mkdir -p "$tmp/empty"
expect_bad "holds no .png" --dir="$tmp/empty"
expect_bad "must be 1 or 3" --dir="$tmp/imgs" --channels=2
printf 'not an image' >"$tmp/imgs/cat/zz.png"
expect_bad "zz.png' is neither a PNG nor a JPEG" --dir="$tmp/imgs"
head -c 60 "$tmp/imgs/cat/a.png" >"$tmp/imgs/cat/zz.png"
expect_bad "cannot decode PNG '.*zz.png'" --dir="$tmp/imgs"
rm "$tmp/imgs/cat/zz.png"
cp "$tmp/imgs/cat/a.png" "$tmp/imgs/loose.png"
expect_bad "mixes image files" --dir="$tmp/imgs"
echo "images: bad input ok"
