#!/bin/sh
# tests/run.sh: runs every suite `make check` has built and prints one
# closing line "check: N passed, M failed, K skipped". Exit status 1 if any
# failed.
#
# Each test program ends with "RESULT passed=N failed=M skipped=K" (the
# older "RESULT passed=N failed=M" still parses, as skipped=0). A file
# fails when it reports failures, exits non-zero, prints no RESULT line, or
# ran nothing (0 passed, 0 failed, 0 skipped). A skip is loud: each one
# prints "SKIP reason=R ...", and the test program exits 1 unless
# TANDEM_ALLOW_SKIP names R (TANDEM_ALLOW_SKIP=cyrus,root; "all" accepts
# every reason); this script checks the same and fails the file too.
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

passed=0; failed=0; skipped=0; failed_names=""
allow=$(echo "${TANDEM_ALLOW_SKIP:-}" | tr ', ' '\n\n')
export TANDEM_ALLOW_SKIP="${TANDEM_ALLOW_SKIP:-}"

skip_allowed() { # reason
	echo "$allow" | grep -qx -e "$1" -e all
}
suites=${TESTS:-"unit unit-asan fuzz-replay integration"}

run_one() { # name command...
	name=$1; shift
	case "$name" in *"${ONLY:-}"*) ;; *) return ;; esac
	log="$scratch/$(echo "$name" | tr '/' '_').log"
	start=$(date +%s)
	"$@" >"$log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	res='^RESULT passed=\([0-9]*\) failed=\([0-9]*\)\( skipped=\([0-9]*\)\)\{0,1\}$'
	p=$(sed -n "s/$res/\\1/p" "$log" | tail -n 1)
	f=$(sed -n "s/$res/\\2/p" "$log" | tail -n 1)
	k=$(sed -n "s/$res/\\4/p" "$log" | tail -n 1)
	why=""
	if [ -z "$p" ]; then p=0; f=1; why="no RESULT line"; fi
	[ -n "$k" ] || k=0
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
	if [ "$p" = 0 ] && [ "$f" = 0 ] && [ "$k" = 0 ]; then f=1; why="ran nothing"; fi
	refused=""
	for r in $(sed -n 's/^SKIP reason=\([^ ]*\).*/\1/p' "$log" | sort -u); do
		skip_allowed "$r" || refused="$refused $r"
	done
	if [ -n "$refused" ]; then
		[ "$f" != 0 ] || f=1
		why="${why:+$why; }skipped for$refused (TANDEM_ALLOW_SKIP does not name it)"
	fi
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + k))
	if [ "$f" != 0 ]; then
		echo "FAIL $name ($p passed, $f failed, $k skipped, exit $rc, ${secs}s${why:+; $why}); its output:"
		sed 's/^/    /' "$log" | tail -n 60
		failed_names="$failed_names $name"
	elif [ "$k" != 0 ]; then
		echo "ok   $name ($p passed, $k skipped: $(sed -n 's/^SKIP reason=\([^ ]*\).*/\1/p' "$log" | sort -u | tr '\n' ' ')allowed, ${secs}s)"
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
echo "check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
