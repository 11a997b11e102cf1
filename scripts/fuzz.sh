#!/usr/bin/env bash
# The fuzzers (docs/fuzzing.md): builds tests/fuzz with Debian's clang, AddressSanitizer and
# UndefinedBehaviorSanitizer in build-fuzz/, makes the seed files with unidiff's own writers, and
# runs each libFuzzer target for SECONDS (default 30) from its corpus. Exit 1 when a target finds a
# crash, a leak of bounds (-rss_limit_mb) or a hang (-timeout); its input is kept as
# build-fuzz/artifacts/<target>-crash-*, reproducible with `build-fuzz/tests/fuzz/fuzz_<target> FILE`
# under the same FUZZ_SEED_* variables (printed below).
#   scripts/fuzz.sh [SECONDS] [TARGET...]   targets: dataset mixture model_file manifest flagfile safetensors
#   UNIDIFF_FUZZ_BUILD_DIR  build folder (default build-fuzz)
#   FUZZ_STRICT=1           refusals other than InputError count as crashes
#   UNIDIFF_FUZZ_SEED       libFuzzer's -seed (default 0: a random one; the test command passes 1,
#                           so CI explores the same inputs on every run of the same code)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dataset mixture model_file manifest flagfile safetensors)
# shellcheck source=setup.sh
source "$repo/scripts/setup.sh"   # the main build: its unidiff writes the seeds
fuzz_dir=${UNIDIFF_FUZZ_BUILD_DIR:-$repo/build-fuzz}
if ! command -v clang++ >/dev/null; then
  say "installing Debian's clang (libFuzzer and the sanitizers' runtimes)"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends clang >&2
fi
fuzz_args=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
  -DCMAKE_PREFIX_PATH="$torch_prefix" -DPython_EXECUTABLE="$UNIDIFF_VENV/bin/python"
  -DUNIDIFF_PYTHON="$UNIDIFF_VENV/bin/python" -DUNIDIFF_FUZZ=ON -DUNIDIFF_BUILD_TESTS=OFF
  -DUNIDIFF_CUDA_KERNELS=OFF -DUNIDIFF_NCCL=OFF -DCMAKE_CXX_COMPILER_LAUNCHER=ccache
  -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}")
configure_build "$fuzz_dir" "${fuzz_args[@]}"   # scripts/setup.sh
say "building the fuzz targets"
start=$(date +%s)
cmake --build "$fuzz_dir" -j "${UNIDIFF_JOBS:-$(nproc)}" --target "${targets[@]/#/fuzz_}" >&2
say "fuzz build done in $(( $(date +%s) - start )) s"

# Seeds: valid files of every kind, written by unidiff (and h5py for the two unidiff has no
# command for); the fuzzers edit copies of them.
seeds="$fuzz_dir/seeds"
if [ ! -f "$seeds/.complete" ]; then
  rm -rf "$seeds" && mkdir -p "$seeds"
  "$UNIDIFF_BIN" data toy --dist=moons --num=64 --seed=1 --out="$seeds/moons.h5" >/dev/null
  "$UNIDIFF_VENV/bin/python" - "$seeds" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
with h5py.File(f"{d}/images.h5", "w") as f:
    f["data"] = rng.integers(0, 256, (32, 1, 8, 8), dtype=np.uint8)
    f["labels"] = rng.integers(0, 10, 32, dtype=np.int64)
    f["labels"].attrs["num_classes"] = 10
with h5py.File(f"{d}/mixture.h5", "w") as f:
    f["weights"] = np.array([0.5, 0.3, 0.2])
    f["means"] = rng.normal(size=(3, 2))
    f["stds"] = np.full((3, 2), 0.3)
PY
  "$UNIDIFF_BIN" train --data="$seeds/moons.h5" --data_batch=16 --model_hidden=8 --model_layers=1 \
    --model_time_dim=8 --train_steps=2 --save_every=2 --log_every=1 --threads=1 --run_dir="$seeds/run" >/dev/null
  touch "$seeds/.complete"
fi
export FUZZ_SEED_DATASET="$seeds/moons.h5" FUZZ_SEED_IMAGES="$seeds/images.h5"
export FUZZ_SEED_MIXTURE="$seeds/mixture.h5" FUZZ_SEED_MODEL="$seeds/run/model.h5"
export FUZZ_SEED_CHECKPOINT="$seeds/run/checkpoints/step-000000002"
# Leaks are not the target (LibTorch and Open MPI keep allocations until exit).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1
env | grep '^FUZZ_SEED_' | sed 's/^/[fuzz] /' >&2

mkdir -p "$fuzz_dir/artifacts"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
failed=()
printf '\n%-11s %8s %10s %8s %s\n' target seconds executions corpus result
for t in "${targets[@]}"; do
  corpus="$fuzz_dir/corpus/$t"
  mkdir -p "$corpus"
  [ "$t" = flagfile ] && cp -n "$repo"/experiments/recipes/*.flags "$corpus/" 2>/dev/null || true
  if [ "$t" = safetensors ] && [ ! -e "$corpus/seed.safetensors" ]; then
    # Two tensors and metadata, laid out as the format's specification says (no package needed).
    "$UNIDIFF_VENV/bin/python" - "$corpus/seed.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}}, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<4f", 1, 2, 3, 4) + struct.pack("<q", 7))
PY
  fi
  log="$fuzz_dir/artifacts/$t.log"
  rc=0
  TMPDIR="$work" "$fuzz_dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30 \
    -seed="${UNIDIFF_FUZZ_SEED:-0}" -print_final_stats=1 -artifact_prefix="$fuzz_dir/artifacts/$t-" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  result=ok
  if [ $rc -ne 0 ]; then result="FAILED (exit $rc; $log)"; failed+=("$t"); fi
  printf '%-11s %8s %10s %8s %s\n' "$t" "$seconds" "${execs:-?}" "$(ls "$corpus" | wc -l)" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  for t in "${failed[@]}"; do echo "--- $t:"; grep -E "ERROR|SUMMARY|runtime error|FUZZ_STRICT|#[0-9]+ 0x" "$fuzz_dir/artifacts/$t.log" | head -30; done
  exit 1
fi
