#!/usr/bin/env bash
# The test command: set-up (packages, torch venv, build with -Werror), then every test with ctest:
# unit, dist (under mpirun -np 1, 2, 3), cli, e2e (toy recipes trained under mpirun -np 2).
# Then, without extra arguments, the fuzzers for a bounded time (scripts/fuzz.sh; each target
# UNIDIFF_FUZZ_SECONDS, default 20; 0 skips them). Extra arguments go to ctest and skip the
# fuzzers, e.g. `scripts/test.sh -L unit`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export UNIDIFF_WERROR=${UNIDIFF_WERROR:-ON}
export UNIDIFF_TEST_PACKAGES=1  # diffusers, safetensors, tensorboard in the venv (scripts/setup.sh)
# shellcheck source=setup.sh
source "$repo/scripts/setup.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$UNIDIFF_BUILD_DIR"
ctest --output-on-failure --timeout 900 -j "${UNIDIFF_TEST_JOBS:-2}" "$@"
if [ $# -eq 0 ] && [ "${UNIDIFF_FUZZ_SECONDS:-20}" != 0 ]; then
  UNIDIFF_FUZZ_SEED=${UNIDIFF_FUZZ_SEED:-1} "$repo/scripts/fuzz.sh" "${UNIDIFF_FUZZ_SECONDS:-20}"
fi
