#!/bin/sh
# Builds and runs one unit test (or fuzz replay) from explicit sources,
# without libtandem.a, so a module can be tested while other modules are
# still being written. Plain build first, then ASan+UBSan.
#
#   scripts/build-one.sh tests/unit/test_dlist.c src/proto/sync/*.c
#   scripts/build-one.sh tests/fuzz/fuzz_dlist.c src/proto/sync/*.c -- tests/fuzz/corpus/fuzz_dlist
#
# src/lib/*.c is always linked in. Arguments after -- go to the binary.
set -eu
cd "$(dirname "$0")/.."
main=$1; shift
srcs=""; args=""
while [ $# -gt 0 ]; do
	[ "$1" = "--" ] && { shift; args="$*"; break; }
	srcs="$srcs $1"; shift
done
name=$(basename "$main" .c)
out=build/one; mkdir -p "$out"
W="-std=c11 -D_GNU_SOURCE -Isrc -Itests/unit -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter"
P="$(pkg-config --cflags sqlite3 openssl zlib)"
L="$(pkg-config --libs sqlite3 openssl zlib) -lcrypt"
extra=""
case "$main" in tests/fuzz/*) extra="tests/fuzz/replay_main.c" ;; esac
# shellcheck disable=SC2086
gcc $W -O2 $P -o "$out/$name" "$main" $extra $srcs src/lib/*.c $L
# shellcheck disable=SC2086
gcc $W -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined $P \
	-o "$out/$name-asan" "$main" $extra $srcs src/lib/*.c $L
# shellcheck disable=SC2086
"$out/$name" $args
# shellcheck disable=SC2086
"$out/$name-asan" $args
