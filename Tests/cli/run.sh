#!/usr/bin/env bash
# Command-line tests: real processes, pipes, exit codes, files on disk.
# Usage: TL_BIN=.build/debug bash Tests/cli/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${TL_BIN:-.build/debug}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
export PATH=$BIN:$PATH
SAMPLE=$ROOT/examples/data/fmnist-sample
T=$(mktemp -d /tmp/tl-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0; skip=0
ok()   { pass=$((pass+1)); }
bad()  { fail=$((fail+1)); echo "FAIL: $*"; }
skipped() { skip=$((skip+1)); echo "skip: $*"; }
# expect CODE DESCRIPTION -- COMMAND...: runs COMMAND (stderr to $T/err), checks the exit code.
expect() {
  local want=$1 desc=$2; shift 3
  "$@" >"$T/out" 2>"$T/err"; local got=$?
  if [ "$got" = "$want" ]; then ok; else bad "$desc: exit $got, wanted $want; stderr: $(head -c 300 "$T/err")"; fi
}
# err_has TEXT DESCRIPTION: the last command's stderr is one line containing TEXT.
err_has() {
  if grep -qF -- "$1" "$T/err" && [ "$(wc -l < "$T/err")" -le 2 ]; then ok; else bad "$2: stderr lacks '$1': $(head -c 300 "$T/err")"; fi
}

for f in Tests/cli/test_*.sh; do
  # shellcheck source=/dev/null
  source "$f"
done

echo "cli: $pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
