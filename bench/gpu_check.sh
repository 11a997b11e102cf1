#!/usr/bin/env bash
# On the GPU host (see README): configure and build unidiff against the host's torch with CUDA,
# check the binary's libraries, run the GPU-only tests and the fused-kernel benchmark, time the
# UNet training step against the PyTorch peer (bench/unet_step.sh), train the recipes on cuda:0,
# run the whole test suite, and print short tables last. Needs the Debian packages for glog, gflags,
# libpng and nlohmann-json in .deps/ and the peer script in .peer/ (both git-ignored; `apt-get download` them on
# the development machine, see bench/README.md).
#   bash bench/gpu_check.sh [STAGE...]     (writes logs under $OUT, or /tmp/unidiff-gpu)
# Stages, in order of what matters most when device time is short: build (configure, the targets
# the next stages need), gpu (GPU-only tests, group_norm_bench), bench (unet_step.sh vs the peer),
# train (toy and Fashion-MNIST recipes on the GPU), ctest (everything built, the whole suite).
# No STAGE: all of them. Each call on a warm machine reuses the build folder; rows accumulate in
# $OUT/table.md until a build stage starts it again.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-/tmp/unidiff-gpu}
build=${UNIDIFF_BUILD_DIR:-$repo/build-gpu}
deps=/tmp/unidiff-deps
mkdir -p "$out" "$deps"
row() { printf '| %-28s | %s |\n' "$1" "$2" >>"$out/table.md"; }
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(build gpu bench train ctest)
want() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
finish() { echo; cat "$out/profile.md" 2>/dev/null; echo; cat "$out/unet_step.md" 2>/dev/null; echo; cat "$out/group_norm.md" 2>/dev/null; echo
           cat "$out/graph_cases.txt" 2>/dev/null; cat "$out/table.md"; }

for f in "$repo"/.deps/*.deb; do dpkg -x "$f" "$deps"; done
export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
py=$(command -v python3)
prefix=$("$py" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')

if want build; then
: >"$out/table.md"
row "device" "$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"
t0=$(date +%s)
if ! cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix;$deps/usr" -DTORCH_CUDA_ARCH_LIST=9.0 \
    -DPython_EXECUTABLE="$py" -DUNIDIFF_PYTHON="$py" >"$out/configure.log" 2>&1; then
  tail -40 "$out/configure.log"; row "configure" "FAILED"; cat "$out/table.md"; exit 1
fi
t1=$(date +%s)
if ! cmake --build "$build" -j "$(nproc)" --target unidiff unit_tests dist_tests unet_step_bench group_norm_bench \
    >"$out/build.log" 2>&1; then
  grep -E "error|Error" "$out/build.log" | head -30; row "build" "FAILED"; cat "$out/table.md"; exit 1
fi
t2=$(date +%s)
row "configure / build" "$((t1 - t0)) s / $((t2 - t1)) s on $(nproc) cores"
readelf -d "$build/launcher/unidiff" | grep -E 'NEEDED|RUNPATH' >"$out/needed.txt"
{ c++ --version | head -1; c++ -print-file-name=libstdc++.so; ninja -C "$build" -t commands tests/unit_tests | tail -1; } >"$out/toolchain.txt" 2>&1
grep -q libtorch_cuda "$out/needed.txt" && row "libtorch_cuda linked" "yes" || row "libtorch_cuda linked" "NO"
grep -qE 'libcuda\.so' "$out/needed.txt" && row "stub libcuda linked" "YES (bad)" || row "stub libcuda linked" "no"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if want gpu; then
# The GPU-only checks, by name (they skip on machines without CUDA).
gtest_row() {  # gtest_row LABEL BINARY FILTER
  local log="$out/${3//\*/all}.log"
  "$2" --gtest_filter="$3" >"$log" 2>&1
  if grep -q "FAILED" "$log" || ! grep -q "PASSED\|SKIPPED" "$log"; then row "$1" "FAILED (see ${log##*/})"
  elif grep -q "\[  SKIPPED \]" "$log"; then row "$1" "SKIPPED"
  else row "$1" "passed ($(grep -o '\[  PASSED  \] [0-9]* test' "$log" | grep -o '[0-9]*') tests)"; fi
}
gtest_row "keyed RNG: CUDA == CPU bits" "$build/tests/unit_tests" "Rng.CudaDrawsEqualCpuDrawsBitForBit"
(cd "$build" && ctest -R '^reference_math$' >"$out/reference_math.log" 2>&1)  # the PyTorch float64 values
UNIDIFF_MATH_REFERENCE=$build/tests/math_reference.h5 \
  gtest_row "schedule coefficients on CUDA" "$build/tests/unit_tests" "MathReference.ScheduleCoefficientsOnTheGpu"
gtest_row "loader: pinned, CUDA == CPU" "$build/tests/unit_tests" "Loader.CudaBatchesEqualCpuBatchesFromPinnedMemory"
gtest_row "fused GroupNorm kernels" "$build/tests/unit_tests" "FusedGroupNorm.Cuda*"
gtest_row "fused keyed dropout == composite" "$build/tests/unit_tests" "KeyedDropout.FusedCudaKernelEqualsTheCompositeBitForBit"
gtest_row "NCCL (1 rank) == MPI path" "$build/tests/dist_tests" "Gradients.NcclPathMatchesTheMpiPathOnOneGpu"
gtest_row "CUDA graph step == eager step" "$build/tests/dist_tests" "CudaGraph.ReplayedStepsMatchEagerSteps"
gtest_row "step never waits for the GPU" "$build/tests/dist_tests" "PretrainStep.NeverWaitsForTheGpu"
grep -hE "^\[ (graph|no sync)" "$out/CudaGraph.ReplayedStepsMatchEagerSteps.log" \
  "$out/PretrainStep.NeverWaitsForTheGpu.log" >"$out/graph_cases.txt" 2>/dev/null
"$build/bench/group_norm_bench" >"$out/group_norm.log" 2>&1
sed -n '/^| shape/,$p' "$out/group_norm.log" >"$out/group_norm.md"
row "group_norm_bench" "$(grep -c '^RESULT' "$out/group_norm.log") shapes (table above)"
fi

if want bench; then
: >"$out/profile.md"
# The UNet training step against the plain-PyTorch peer (bench/unet_step.sh; the peer script in .peer/).
OUT=$out bash "$repo/bench/unet_step.sh" "$build" >"$out/unet_step.md" 2>"$out/unet_step.err"
# Where the time of a step goes (kernels by kind, top kernels), eager and as a graph with fused norms.
for v in "eager|--precision=bf16 --cudnn_benchmark" \
         "graph fusedGN|--precision=bf16 --cudnn_benchmark --cuda_graph --fused_group_norm"; do
  IFS='|' read -r name flags <<<"$v"
  # shellcheck disable=SC2086
  "$build/bench/unet_step_bench" --steps=20 --profile=5 $flags >"$out/profile-${name// /-}.log" 2>&1
  { echo "### profile: $name ($flags)"; sed -n '/^PROFILE/,/^RESULT/p' "$out/profile-${name// /-}.log"; } >>"$out/profile.md"
done
row "unet step profiles" "$(grep -c '^PROFILE' "$out/profile.md") (profile.md)"
fi

if want train; then

bin=$build/launcher/unidiff
"$bin" data toy --dist=moons --num=20000 --out=/tmp/ud-moons.h5 >/dev/null 2>&1
for dev in gpu gpu-graph cpu; do
  extra=()
  [ "$dev" = cpu ] && extra=(env CUDA_VISIBLE_DEVICES=)
  [ "$dev" = gpu-graph ] && extra=(env)
  "${extra[@]}" "$bin" train --flagfile="$repo/experiments/recipes/toy2d_ddpm.flags" \
    --data=/tmp/ud-moons.h5 --run_dir=/tmp/ud-run-$dev --overwrite --train_steps=1000 \
    --log_every=500 $([ "$dev" = gpu-graph ] && echo --cuda_graph) >"$out/train-$dev.log" 2>&1
  row "toy2d_ddpm train ($dev)" "$(grep -E 'on (cuda|cpu)' "$out/train-$dev.log" | head -1 | sed 's/.*rank(s) on //; s/;.*//'), $(grep 'step 1000/1000' "$out/train-$dev.log" | sed 's/.*loss/loss/')"
done
"$bin" sample --checkpoint=/tmp/ud-run-gpu --num=2000 --out=/tmp/ud-s.h5 >/dev/null 2>&1
row "eval of GPU-trained model" "$("$bin" eval --samples=/tmp/ud-s.h5 --reference=/tmp/ud-moons.h5 | sed 's/.*"sliced_wasserstein": \([0-9.e-]*\).*/SW \1/')"
# `unidiff train` itself on images (1,000 Fashion-MNIST test images brought in .deps/, see
# bench/README.md): the Fashion-MNIST UNet recipe, fp32 and bf16 + channels-last + cuDNN autotuning,
# then sampling from the bf16 run.
if [ -f "$repo/.deps/fm-test-1000.h5" ]; then
  for v in "fp32|" "bf16 nhwc cudnn|--precision=bf16 --channels_last --cudnn_benchmark" \
           "bf16 cudnn graph|--precision=bf16 --cudnn_benchmark --cuda_graph" \
           "bf16 cudnn graph fusedGN|--precision=bf16 --cudnn_benchmark --cuda_graph --fused_group_norm"; do
    IFS='|' read -r name flags <<<"$v"
    tag=${name// /-}
    # shellcheck disable=SC2086
    "$bin" train --flagfile="$repo/experiments/recipes/fmnist_unet_eps.flags" --data="$repo/.deps/fm-test-1000.h5" \
      --run_dir=/tmp/ud-fm-$tag --overwrite --train_steps=200 --log_every=100 $flags >"$out/fm-$tag.log" 2>&1
    row "fmnist unet train ($name)" "$(grep 'step 200/200' "$out/fm-$tag.log" | sed 's/.*loss/loss/; s/  eta.*//')"
  done
  "$bin" sample --checkpoint=/tmp/ud-fm-bf16-nhwc-cudnn --sampler=ddim --steps=25 --num=256 \
    --out="$out/fm-samples.h5" >"$out/fm-sample.log" 2>&1
  row "fmnist unet sample (bf16 run)" "$(grep -E 'samples written|error' "$out/fm-sample.log" | head -1)"
  # Sampling itself in bf16, channels-last, with the fused norms (the sampler stays float32).
  "$bin" sample --checkpoint=/tmp/ud-fm-bf16-nhwc-cudnn --sampler=ddim --steps=25 --num=256 --precision=bf16 \
    --channels_last --fused_group_norm --cudnn_benchmark --out="$out/fm-samples-bf16.h5" >"$out/fm-sample-bf16.log" 2>&1
  row "fmnist sample fp32 / bf16 nhwc fusedGN" "$(grep -o '([0-9.]* samples/s)' "$out/fm-sample.log") / $(grep -oE '\([0-9.]* samples/s\)|error.*' "$out/fm-sample-bf16.log" | head -1)"
else
  row "fmnist unet train" "SKIPPED (no .deps/fm-test-1000.h5)"
fi
fi

if want ctest; then
cmake --build "$build" -j "$(nproc)" >"$out/build-all.log" 2>&1 || row "build (all targets)" "FAILED"
(cd "$build" && ctest --output-on-failure -j 6 --timeout 300) >"$out/ctest.log" 2>&1
if grep -q SegFault "$out/ctest.log"; then
  UNIDIFF_DDPM_REFERENCE="$build/tests/ddpm_reference.h5" gdb -batch -ex run -ex bt \
    --args "$build/tests/unit_tests" >"$out/gdb.log" 2>&1
  grep -E "^#" "$out/gdb.log" | head -12
fi
row "ctest" "$(grep -E 'tests passed' "$out/ctest.log" | tail -1)"
grep -E "Failed|\*\*\*" "$out/ctest.log" | head -10
fi
finish
