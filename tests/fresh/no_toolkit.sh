#!/usr/bin/env bash
# The fresh-machine check of scripts/setup.sh on a machine without a CUDA toolkit: in a private
# mount namespace (needs root), /usr/local/cuda is hidden under an empty tmpfs and PATH loses its
# CUDA entries; setup then installs NVIDIA's toolkit wheels from PyPI into the venv, configures a
# new build folder with them and builds `unidiff`, which converts a toy set and trains 50 steps.
# The machine's toolkit and other processes see nothing of it. Not part of CI: it is a second full
# build (about 15 minutes on 2 cores, the compile lines differ from CI's, so ccache cannot help).
#   bash tests/fresh/no_toolkit.sh [BUILD_DIR]      (default /tmp/unidiff-no-toolkit)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-/tmp/unidiff-no-toolkit}
[ "$(id -u)" -eq 0 ] || { echo "no_toolkit.sh: needs root (a private mount namespace)" >&2; exit 2; }
exec unshare --mount --propagation private bash -s -- "$repo" "$build" <<'INNER'
set -euo pipefail
repo=$1 build=$2
# Every toolkit folder under /usr/local (cuda, cuda-13.0, ...: links resolved) gets an empty
# tmpfs over it, so links into it (/usr/local/bin/nvcc on some images) dangle.
for d in /usr/local/cuda*; do
  real=$(readlink -f "$d")
  if [ -d "$real" ] && ! mountpoint -q "$real"; then mount -t tmpfs none "$real"; fi
done
# Wrappers elsewhere on PATH that call into it (e.g. /usr/local/bin/nvcc running the toolkit's):
# an empty file that is not executable bound over each.
blank=$(mktemp)
chmod 644 "$blank"
for f in nvcc ptxas nvlink fatbinary cudafe++ bin2c __nvcc_device_query; do
  p=$(command -v "$f" 2>/dev/null) || continue
  mount --bind "$blank" "$p"
done
hash -r
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -i cuda | paste -sd:)
export PATH
if [ -x "$(command -v nvcc)" ] || [ -e /usr/local/cuda/bin/nvcc ]; then echo "a toolkit is still visible" >&2; exit 1; fi
echo "[no_toolkit] /usr/local/cuda* hidden ($(ls /usr/local/cuda/ 2>/dev/null | wc -l) entries left), no nvcc on PATH"
start=$(date +%s)
UNIDIFF_BUILD_DIR=$build UNIDIFF_BUILD_TARGETS=unidiff bash "$repo/scripts/setup.sh"
grep -E "CMAKE_CUDA_COMPILER:|CUDAToolkit_ROOT:" "$build/CMakeCache.txt"
tmp=$(mktemp -d)
"$build/launcher/unidiff" data toy --dist=moons --num=2000 --out="$tmp/m.h5"
"$build/launcher/unidiff" train --data="$tmp/m.h5" --run_dir="$tmp/run" --train_steps=50 --log_every=25 --threads=2
rm -rf "$tmp"
echo "[no_toolkit] configured, built and trained without a system CUDA toolkit in $(( $(date +%s) - start )) s"
INNER
