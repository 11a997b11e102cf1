#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine, safe to run again: installs the Debian packages that are
# missing, a project venv holding the pinned torch wheel (our LibTorch) in a per-user cache, and
# configures and builds unidiff into ./build. Sourced by demo.sh and test.sh; runnable on its own.
#
# Environment (all optional):
#   UNIDIFF_CACHE      cache root for the venv and ccache (default ${XDG_CACHE_HOME:-~/.cache}/unidiff)
#   UNIDIFF_BUILD_DIR  build folder (default ./build)
#   UNIDIFF_BUILD_TYPE CMake build type (default Release)
#   UNIDIFF_WERROR     ON to build with -Werror (test.sh sets it); unset: the build folder's setting,
#                      OFF for a new one
#   UNIDIFF_JOBS       parallel build jobs (default: number of cores)
#   UNIDIFF_BUILD_TARGETS  build only these targets (default: everything)
set -euo pipefail

UNIDIFF_TORCH_VERSION=2.11.0
# The venv's other pins (a fresh machine gets exactly what CI ran with).
UNIDIFF_PIP_VERSION=26.3
UNIDIFF_NUMPY_VERSION=2.4.6
UNIDIFF_H5PY_VERSION=3.16.0
# A CUDA toolkit from PyPI for machines without one (the torch wheel's CMake package needs nvcc and
# the CUDA headers even to build for the CPU): NVIDIA's wheels of the toolkit the torch wheel was
# built with, unpacked beside its CUDA runtime wheels in the venv (site-packages/nvidia/cu13).
UNIDIFF_CUDA_TOOLKIT_PINS="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85"
# What the tests check interop against (scripts/test.sh sets UNIDIFF_TEST_PACKAGES=1): diffusers
# and safetensors for import/export, tensorboard's own event reader.
UNIDIFF_TEST_PACKAGES_PINS="diffusers==0.42.1 safetensors==0.8.0 tensorboard==2.21.0"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${UNIDIFF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/unidiff}
build_dir=${UNIDIFF_BUILD_DIR:-$repo/build}
py=${UNIDIFF_PYTHON:-python3}

say() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages ------------------------------------------------------------------------
apt_packages=(build-essential cmake ninja-build ccache pkg-config
  libopenmpi-dev openmpi-bin libhdf5-dev libgoogle-glog-dev libgflags-dev libgtest-dev
  libpng-dev libjpeg-dev libjpeg-turbo-progs dataset-fashion-mnist python3-venv
  nlohmann-json3-dev libprotobuf-dev protobuf-compiler)
# The tests also start a single-node Slurm (tests/cli/slurm.sh): its daemons only in test mode.
if [ "${UNIDIFF_TEST_PACKAGES:-0}" = 1 ]; then
  apt_packages+=(slurmctld slurmd slurm-client munge)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# --- the torch venv (LibTorch), keyed by torch and Python version --------------------------
pyver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
venv="$cache/venv-torch$UNIDIFF_TORCH_VERSION-py$pyver"
mkdir -p "$cache"
(
  flock 9
  if [ ! -f "$venv/.unidiff-complete" ]; then
    say "creating $venv with torch==$UNIDIFF_TORCH_VERSION (about 2.7 GB download, once per machine)"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --no-cache-dir "pip==$UNIDIFF_PIP_VERSION" >&2
    "$venv/bin/pip" install -q --no-cache-dir "torch==$UNIDIFF_TORCH_VERSION" \
      "numpy==$UNIDIFF_NUMPY_VERSION" "h5py==$UNIDIFF_H5PY_VERSION" >&2
    touch "$venv/.unidiff-complete"
  fi
  # The test packages, once per set of pins (a marker named by their hash).
  if [ "${UNIDIFF_TEST_PACKAGES:-0}" = 1 ]; then
    marker="$venv/.unidiff-test-packages-$(printf '%s' "$UNIDIFF_TEST_PACKAGES_PINS" | md5sum | cut -c1-12)"
    if [ ! -f "$marker" ]; then
      say "installing the test packages into the venv: $UNIDIFF_TEST_PACKAGES_PINS"
      # shellcheck disable=SC2086
      "$venv/bin/pip" install -q --no-cache-dir $UNIDIFF_TEST_PACKAGES_PINS >&2
      touch "$marker"
    fi
  fi
) 9>"$cache/.venv.lock"
export UNIDIFF_VENV="$venv"
torch_prefix=$("$venv/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')

# --- a CUDA toolkit: the system's (nvcc on PATH or /usr/local/cuda), else the PyPI one ------------
cuda_args=()
if [ ! -x "$(command -v nvcc 2>/dev/null)" ] && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  cu=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
  (
    flock 9
    marker="$venv/.unidiff-cuda-toolkit-$(printf '%s' "$UNIDIFF_CUDA_TOOLKIT_PINS" | md5sum | cut -c1-12)"
    if [ ! -f "$marker" ]; then
      say "no CUDA toolkit on this machine: installing NVIDIA's from PyPI into the venv ($UNIDIFF_CUDA_TOOLKIT_PINS, about 100 MB)"
      # shellcheck disable=SC2086
      "$venv/bin/pip" install -q --no-cache-dir $UNIDIFF_CUDA_TOOLKIT_PINS >&2
      # The layout CMake and nvcc expect of a toolkit: lib64/ and unversioned library names.
      (cd "$cu/lib" && for f in *.so.*; do b=${f%%.so.*}.so; [ -e "$b" ] || ln -s "$f" "$b"; done)
      ln -sfn lib "$cu/lib64"
      touch "$marker"
    fi
  ) 9>"$cache/.venv.lock"
  say "CUDA toolkit: $cu (from PyPI)"
  cuda_args=(-DCUDAToolkit_ROOT="$cu" -DCUDA_TOOLKIT_ROOT_DIR="$cu" -DCMAKE_CUDA_COMPILER="$cu/bin/nvcc")
fi

# --- configure and build ----------------------------------------------------------------------
export CCACHE_DIR="${CCACHE_DIR:-$cache/ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$repo}"  # relative paths: clones in other folders share hits
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
# -Werror changes every compile command: unset, keep what the build folder has (the demo after the
# tests reuses their build instead of compiling everything again without it), OFF for a new one.
werror=${UNIDIFF_WERROR:-}
if [ -z "$werror" ]; then
  werror=$(sed -n 's/^UNIDIFF_WERROR:BOOL=//p' "$build_dir/CMakeCache.txt" 2>/dev/null || true)
  # ON by default, as the test command builds: the main job and the tests then share one
  # configuration and one build (a different -Werror would change every compile line).
  werror=${werror:-ON}
fi
cmake_args=(-G Ninja
  -DCMAKE_BUILD_TYPE="${UNIDIFF_BUILD_TYPE:-Release}"
  -DCMAKE_PREFIX_PATH="$torch_prefix"
  -DPython_EXECUTABLE="$venv/bin/python"
  -DUNIDIFF_PYTHON="$venv/bin/python"
  -DUNIDIFF_WERROR="$werror"
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache
  -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
  ${cuda_args[@]+"${cuda_args[@]}"})
# configure_build DIR ARGS...: configures DIR with ARGS when DIR is new or ARGS changed since the
# last time (scripts/fuzz.sh calls it for build-fuzz/ too).
configure_build() {
  local dir=$1
  shift
  local stamp="$dir/.unidiff-cmake-args"
  if [ ! -f "$dir/build.ninja" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$*" ]; then
    say "configuring $dir"
    cmake -S "$repo" -B "$dir" "$@" >&2
    printf '%s' "$*" >"$stamp"
  fi
}
configure_build "$build_dir" "${cmake_args[@]}"
say "building (ccache at $CCACHE_DIR)"
start=$(date +%s)
# shellcheck disable=SC2086
cmake --build "$build_dir" -j "${UNIDIFF_JOBS:-$(nproc)}" ${UNIDIFF_BUILD_TARGETS:+--target $UNIDIFF_BUILD_TARGETS} >&2
say "build done in $(( $(date +%s) - start )) s"
export UNIDIFF_BUILD_DIR="$build_dir"
export UNIDIFF_BIN="$build_dir/launcher/unidiff"
