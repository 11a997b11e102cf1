# Sourced by the test scripts: `expect CODE PATTERN -- command...` runs the command and checks that
# it exits with CODE and that its stdout and stderr together match the extended regex PATTERN.
# A mismatch calls `fail` with what went wrong and prints the output: scripts that count failures
# define fail() themselves (tests/cli/cli.sh); otherwise fail() ends the script with exit 1. The
# output stays in $expect_out (inside the script's $tmp) for further checks. Works under `set -e`.
expect_out="${tmp:?source expect.sh after making the tmp folder}/expect.out"
if ! declare -F fail >/dev/null; then
  fail() { echo "FAIL: $*"; exit 1; }
fi
expect() {
  local code=$1 pattern=$2 rc=0
  shift 3
  "$@" >"$expect_out" 2>&1 || rc=$?
  if [ "$rc" -ne "$code" ]; then cat "$expect_out"; fail "'$*' exited $rc, expected $code"; return 1; fi
  if ! grep -qE -- "$pattern" "$expect_out"; then cat "$expect_out"; fail "'$*' output lacks /$pattern/"; return 1; fi
  return 0
}
