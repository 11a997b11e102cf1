#!/usr/bin/env bash
# Progressive distillation end to end under `mpirun -np 2`: the shared v-prediction toy DDPM teacher
# (toy_teacher.sh: toy2d_ddpm, 2,000 steps), then the toy2d_pd recipe from 256 teacher steps down to 1. The 4-step and
# 1-step students must be much closer to the data (sliced Wasserstein) than the teacher sampled
# with the same 4 or 1 DDIM steps: at most a third of its distance. The 1-step student is also
# sampled through `unidiff sample` (DDIM, 1 trailing step) and evaluated independently.
set -euo pipefail
#   toy2d_pd.sh TEACHER_DIR
bin=$UNIDIFF_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
teacher_dir=$1
cp "$teacher_dir/data.h5" "$tmp/data.h5"
"$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np 2 "$bin" train \
  --flagfile="$UNIDIFF_SOURCE_DIR/experiments/recipes/toy2d_pd.flags" \
  --teacher="$teacher_dir/teacher" --data="$tmp/data.h5" --run_dir="$tmp/pd"
for n in 128 64 32 16 8 4 2 1; do test -s "$tmp/pd/student-$n.h5"; done
"$bin" sample --checkpoint="$tmp/pd/student-1.h5" --sampler=ddim --steps=1 --spacing=trailing \
  --num=2000 --seed=3 --out="$tmp/s1.h5"
one=$("$bin" eval --samples="$tmp/s1.h5" --reference="$tmp/data.h5")
# RUN_DIR/model.h5 is the last student, sampled by default on its own grid (ddim, uniform, 1 step).
"$bin" sample --checkpoint="$tmp/pd" --num=2000 --seed=3 --out="$tmp/default.h5" 2>&1 | tee "$tmp/default.log"
grep -q "samples with ddim, 1 of T = 1000 steps (uniform)" "$tmp/default.log"
"$UNIDIFF_PYTHON" -c "import h5py, numpy as np, sys; a, b = (h5py.File(f)['data'][:] for f in sys.argv[1:]); \
assert np.abs(a - b).max() < 1e-4, np.abs(a - b).max()" "$tmp/s1.h5" "$tmp/default.h5"
"$UNIDIFF_PYTHON" - "$tmp/pd/rounds.jsonl" "$one" <<'PY'
import json, sys
rounds = {r["steps"]: r for r in map(json.loads, open(sys.argv[1]))}
print("steps  student SW  teacher SW (same DDIM steps)")
for n in sorted(rounds, reverse=True):
    print(f"{n:5d}  {rounds[n]['student_sw']:.4f}      {rounds[n]['teacher_sw']:.4f}")
ok = all(rounds[n]["student_sw"] <= rounds[n]["teacher_sw"] / 3 for n in (4, 1))
one = json.loads(sys.argv[2])["sliced_wasserstein"]
print(f"1-step student through 'unidiff sample': SW {one:.4f} (teacher at 1 step {rounds[1]['teacher_sw']:.4f})")
ok = ok and one <= rounds[1]["teacher_sw"] / 3
sys.exit(0 if ok else 1)
PY
