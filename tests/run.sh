#!/bin/sh
# tests/run.sh: runs every suite `make check` has built and prints one
# closing line "check: N passed, M failed". Exit status 1 if any failed.
#
# Suites, in order:
#   unit         build/unit/test_*        (plain build)
#   unit-asan    build/unit-asan/test_*   (ASan + UBSan)
#   fuzz-replay  build/replay/fuzz_*      over tests/fuzz/corpus/<name>/
#   integration  tests/integration/test_*.py and test_*.sh (real daemons/CLI)
# Select with TESTS="unit integration" (default: all); one file with
# ONLY=name-substring.
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tandem-check-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"
export TANDEM_BIN="$top/bin"
export TANDEM_TOP="$top"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

passed=0; failed=0; failed_names=""
suites=${TESTS:-"unit unit-asan fuzz-replay integration"}

run_one() { # name command...
	name=$1; shift
	case "$name" in *"${ONLY:-}"*) ;; *) return ;; esac
	log="$scratch/$(echo "$name" | tr '/' '_').log"
	start=$(date +%s)
	"$@" >"$log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	p=$(sed -n 's/^RESULT passed=\([0-9]*\) failed=\([0-9]*\)$/\1/p' "$log" | tail -n 1)
	f=$(sed -n 's/^RESULT passed=\([0-9]*\) failed=\([0-9]*\)$/\2/p' "$log" | tail -n 1)
	if [ -z "$p" ]; then p=0; f=1; fi
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
	passed=$((passed + p)); failed=$((failed + f))
	if [ "$f" != 0 ]; then
		echo "FAIL $name ($p passed, $f failed, exit $rc, ${secs}s); its output:"
		sed 's/^/    /' "$log" | tail -n 60
		failed_names="$failed_names $name"
	else
		echo "ok   $name ($p passed, ${secs}s)"
	fi
}

for suite in $suites; do
	case $suite in
	unit)
		for t in build/unit/test_*; do [ -x "$t" ] && run_one "unit/$(basename "$t")" "$t"; done ;;
	unit-asan)
		for t in build/unit-asan/test_*; do [ -x "$t" ] && run_one "unit-asan/$(basename "$t")" "$t"; done ;;
	fuzz-replay)
		for t in build/replay/fuzz_*; do
			[ -x "$t" ] || continue
			n=$(basename "$t")
			[ -d "tests/fuzz/corpus/$n" ] || { echo "FAIL fuzz-replay/$n: no corpus tests/fuzz/corpus/$n"; failed=$((failed+1)); continue; }
			run_one "fuzz-replay/$n" "$t" "tests/fuzz/corpus/$n"
		done ;;
	integration)
		for t in tests/integration/test_*.py tests/integration/test_*.sh; do
			[ -f "$t" ] || continue
			case $t in *.py) run_one "integration/$(basename "$t")" python3 "$t" ;;
			           *.sh) run_one "integration/$(basename "$t")" sh "$t" ;; esac
		done ;;
	*) echo "run.sh: unknown suite $suite" >&2; exit 2 ;;
	esac
done

[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "check: $passed passed, $failed failed"
[ "$failed" = 0 ]
