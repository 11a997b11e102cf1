# Sourced by the test scripts (after making $tmp): `compare RUN_A RUN_B MODE [RTOL]` compares the
# final checkpoints of two runs tensor for tensor, read by the snippet of docs/checkpoints.md (the
# python block after <!-- checkpoint-snippet -->), and their model.h5 (params and ema):
#   exact        every checkpoint tensor and model.h5 bit for bit;
#   close        both equal to rounding (rtol RTOL, default 1e-3; atol 1e-5);
#   close_exact  the checkpoint bit for bit, model.h5 not compared.
# Prints the groups, the tensor count and the largest difference; exits 1 on a mismatch.
awk '/<!-- checkpoint-snippet -->/ {on = 1; next} on && /^```python/ {inside = 1; next}
     inside && /^```/ {exit} inside {print}' "$UNIDIFF_SOURCE_DIR/docs/checkpoints.md" >"$tmp/read_ckpt.py"
grep -q "def read_checkpoint" "$tmp/read_ckpt.py" || { echo "docs/checkpoints.md snippet not found"; exit 1; }
compare() {
  "$UNIDIFF_PYTHON" - "$tmp" "$1" "$2" "$3" "${4:-1e-3}" <<'PY'
import sys, os, h5py, numpy as np
sys.path.insert(0, sys.argv[1]); from read_ckpt import read_checkpoint
a_run, b_run, mode, rtol = sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
assert mode in ("exact", "close", "close_exact"), mode
def final(run):
    d = os.path.join(run, "checkpoints")
    return read_checkpoint(os.path.join(d, open(os.path.join(d, "latest")).read().strip()))
def same(x, y, exact):
    return np.array_equal(x, y) if exact else np.allclose(x, y, rtol=rtol, atol=1e-5)
a, b = final(a_run), final(b_run)
assert sorted(a) == sorted(b), (sorted(a)[:5], sorted(b)[:5])
for k in a:
    assert same(a[k], b[k], mode != "close"), f"{k} differs by {np.abs(a[k] - b[k]).max()}"
if mode != "close_exact":
    with h5py.File(os.path.join(a_run, "model.h5")) as fa, h5py.File(os.path.join(b_run, "model.h5")) as fb:
        for g in ("params", "ema"):
            for k in fa[g]:
                assert same(fa[g][k][...], fb[g][k][...], mode == "exact"), f"model.h5 {g}/{k} differs"
groups = sorted({k.split("/")[0] for k in a})
worst = max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)
print(f"{a_run} vs {b_run}: groups {groups}, {len(a)} tensors, {mode}, max difference {worst:.3g}")
PY
}
