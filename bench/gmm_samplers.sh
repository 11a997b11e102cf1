#!/usr/bin/env bash
# Distance vs steps for every sampler on the analytic mixture oracle: sliced Wasserstein distance
# of 3,000 samples to 3,000 exact mixture samples, next to two independent exact sets' distance.
# Prints a Markdown table (the one in the README). Uses ./build unless UNIDIFF_BIN is set.
#   bash bench/gmm_samplers.sh [DIM]     (DIM = 2 by default)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${UNIDIFF_BIN:-$repo/build/launcher/unidiff}
py=${UNIDIFF_PYTHON:-$(ls -d "${XDG_CACHE_HOME:-$HOME/.cache}"/unidiff/venv-torch*/bin/python | head -1)}
dim=${1:-2}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# The mixture of the unit tests: 3 overlapping components (weights 0.3, 0.3, 0.4).
"$py" - "$tmp/g.h5" "$dim" <<'PY'
import sys, h5py, numpy as np
d = int(sys.argv[2]); m = np.zeros((3, d)); m[0, 0] = 1.5; m[1, 1] = 1.5; m[2, :2] = -1
s = np.full((3, d), 0.4); s[2] *= 1.5
with h5py.File(sys.argv[1], "w") as f:
    f["weights"] = np.array([0.3, 0.3, 0.4]); f["means"] = m; f["stds"] = s
PY
"$bin" data gmm --gmm_file="$tmp/g.h5" --num=3000 --seed=100 --out="$tmp/ref.h5" 2>/dev/null
sw() { "$bin" eval --samples="$1" --reference="$tmp/ref.h5" | sed 's/.*"sliced_wasserstein": \([0-9.e-]*\).*/\1/'; }
"$bin" data gmm --gmm_file="$tmp/g.h5" --num=3000 --seed=101 --out="$tmp/exact.h5" 2>/dev/null
echo "exact vs exact (same size): $(printf '%.4f' "$(sw "$tmp/exact.h5")"), D = $dim"
echo
echo "| sampler | schedule | 1 | 2 | 4 | 10 | 25 | 50 | 100 | 250 |"
echo "|---|---|---|---|---|---|---|---|---|---|"
run() {  # sampler schedule
  local row="| $1 | $2 |"
  for k in 1 2 4 10 25 50 100 250; do
    if "$bin" sample --model=gmm --gmm_file="$tmp/g.h5" --schedule="$2" --sampler="$1" --steps=$k \
        --num=3000 --seed=7 --out="$tmp/s.h5" >/dev/null 2>&1; then
      row+=" $(printf '%.3f' "$(sw "$tmp/s.h5")") |"
    else
      row+=" - |"
    fi
  done
  echo "$row"
}
run ddpm ddpm-linear
run ddpm-simple ddpm-linear
run ddim ddpm-linear
run ddim ddpm-cosine
run instaflow ddpm-linear
run euler rf
run heun rf
run euler ve
run heun ve
run heun trigflow
run smld ve
run cm ve
run lcm ddpm-linear
run trigflow trigflow
run fewstep rf
