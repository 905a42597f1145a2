# tandem: one Makefile, no autotools.
#
# Modules are found by directory: every .c file under src/<module>/ goes
# into build/libtandem.a; src/tools/*.c make bin/tandem; each
# tests/unit/test_*.c is one unit-test binary; each tests/fuzz/fuzz_*.c is
# one fuzz target (libFuzzer with clang, corpus replay with gcc).
#
# Targets:
#   all      bin/tandem, bin/tandemd, bin/tandem-deliver (an MTA's deliver)
#   check    deps + build + unit tests (plain and ASan+UBSan) + fuzz corpus
#            replay + integration tests; ends with "check: N passed, N failed, N skipped"
#   demo     a throwaway instance in ./demo, mail delivered and listed
#   bench    benchmarks; results go to docs/benchmarks.md
#   install  bin/tandem, bin/tandemd and bin/tandem-deliver to $(DESTDIR)$(BINDIR), etc/tandem.conf
#            to $(SYSCONFDIR) (kept if one is there: the example always goes to
#            tandem.conf.example) and the systemd unit to $(UNITDIR), with
#            these paths; PREFIX (default /usr/local) and DESTDIR as usual.
#            It creates no user: docs/operations.md, "Installing".
#   soak     the replication convergence test over many seeds
#            (SOAK_SEEDS, default 20000; prints the seed of any failure)
#   fuzz     runs each libFuzzer target for FUZZ_SECONDS (default 60)
#   clean

ifeq ($(origin CC),default)
CC := gcc
endif
PKGS     := sqlite3 openssl zlib
OPT      ?= -O2
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter
BASEFLAGS := -std=c11 -D_GNU_SOURCE -Isrc -g $(WARN)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt
CFLAGS   ?= $(OPT)
ALL_CFLAGS = $(BASEFLAGS) $(CFLAGS) $(PKG_CFLAGS)
SANFLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# Every module directory goes into the library except the programs' own mains.
PROG_DIRS := src/tools src/tandemd
LIB_SRCS  := $(sort $(filter-out $(PROG_DIRS:%=%/%), $(wildcard src/*/*.c src/proto/*/*.c)))
TOOL_SRCS := $(filter-out src/tools/deliver_lean.c,$(sort $(wildcard src/tools/*.c)))
# bin/tandem-deliver: tandem deliver linked with libc only (no OpenSSL,
# SQLite, zlib: their loading cost more than the delivery through tandemd);
# its direct path runs bin/tandem (src/tools/deliver_lean.c).
LEAN_SRCS := src/tools/deliver_lean.c src/tools/cmd_deliver.c src/tools/tool_util.c
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))

LIB_OBJS  := $(LIB_SRCS:%.c=build/obj/%.o)
TOOL_OBJS := $(TOOL_SRCS:%.c=build/obj/%.o)
LEAN_OBJS := $(LEAN_SRCS:%.c=build/obj/%.o)
ASAN_LIB_OBJS := $(LIB_SRCS:%.c=build/asan/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/unit/%)
ASAN_UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/unit-asan/%)
REPLAY_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/replay/%)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)

.PHONY: all deps check unit unit-asan fuzz-replay integration demo bench fuzz soak clean install
.SUFFIXES:

all: deps bin/tandem bin/tandemd bin/tandem-deliver

deps:
	@scripts/deps.sh build

build/obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

build/asan/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(SANFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

# conf_cyrus.c embeds the list of Cyrus's option names (.incbin)
build/obj/src/conf/conf_cyrus.o build/asan/src/conf/conf_cyrus.o: src/conf/cyrus-3.6-options.txt

build/libtandem.a: $(LIB_OBJS)
	@mkdir -p build
	rm -f $@ && ar rcs $@ $^

build/libtandem-asan.a: $(ASAN_LIB_OBJS)
	@mkdir -p build
	rm -f $@ && ar rcs $@ $^

# tandemd binds every symbol at start (-z now): its forked sessions then
# inherit a resolved GOT instead of each resolving (and copying) it again.
DAEMON_SRCS := $(sort $(wildcard src/tandemd/*.c))
DAEMON_OBJS := $(DAEMON_SRCS:%.c=build/obj/%.o)

bin/tandemd: $(DAEMON_OBJS) build/libtandem.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) -Wl,-z,now -o $@ $(DAEMON_OBJS) build/libtandem.a $(PKG_LIBS)

bin/tandem: $(TOOL_OBJS) build/libtandem.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) -o $@ $(TOOL_OBJS) build/libtandem.a $(PKG_LIBS)

bin/tandem-deliver: $(LEAN_OBJS) build/libtandem.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) -o $@ $(LEAN_OBJS) build/libtandem.a

build/unit/%: tests/unit/%.c tests/unit/test.h build/libtandem.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit -o $@ $< build/libtandem.a $(PKG_LIBS)

build/unit-asan/%: tests/unit/%.c tests/unit/test.h build/libtandem-asan.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(SANFLAGS) $(PKG_CFLAGS) -Itests/unit -o $@ $< build/libtandem-asan.a $(PKG_LIBS)

# Corpus replay: the fuzz target linked with a small main() that feeds it
# every file of tests/fuzz/corpus/<target>/, under ASan+UBSan.
build/replay/%: tests/fuzz/%.c tests/fuzz/replay_main.c build/libtandem-asan.a
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(SANFLAGS) $(PKG_CFLAGS) -o $@ $< tests/fuzz/replay_main.c build/libtandem-asan.a $(PKG_LIBS)

build/fuzz/%: tests/fuzz/%.c $(LIB_SRCS)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -Isrc -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) \
	  -o $@ $< $(LIB_SRCS) $(PKG_LIBS)

unit: $(UNIT_BINS)
unit-asan: $(ASAN_UNIT_BINS)
fuzz-replay: $(REPLAY_BINS)

check: all
	@scripts/deps.sh check
	$(MAKE) --no-print-directory unit unit-asan fuzz-replay
	@tests/run.sh

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p build/fuzz-corpus/$$n; \
	  echo "fuzz: $$n for $${FUZZ_SECONDS:-60}s"; \
	  $$f -max_total_time=$${FUZZ_SECONDS:-60} build/fuzz-corpus/$$n tests/fuzz/corpus/$$n || exit 1; done

demo: all
	@scripts/deps.sh demo
	@scripts/demo.sh

soak: build/unit/test_sync_converge
	TANDEM_SEEDS=$${SOAK_SEEDS:-20000} TANDEM_SEED=$${SOAK_SEED:-$$(date +%s)} build/unit/test_sync_converge

bench: all
	@scripts/deps.sh bench
	@bench/run.sh

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(UNITDIR)
	install -m 755 bin/tandem bin/tandemd bin/tandem-deliver $(DESTDIR)$(BINDIR)/
	install -m 644 etc/tandem.conf $(DESTDIR)$(SYSCONFDIR)/tandem.conf.example
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/tandem.conf ]; then \
	  echo "install: $(DESTDIR)$(SYSCONFDIR)/tandem.conf exists: kept (the new example: tandem.conf.example)"; \
	else install -m 644 etc/tandem.conf $(DESTDIR)$(SYSCONFDIR)/tandem.conf; fi
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/tandem.conf|$(SYSCONFDIR)/tandem.conf|g' \
	  contrib/tandemd.service > $(DESTDIR)$(UNITDIR)/tandemd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/tandemd.service
	@id tandem >/dev/null 2>&1 || echo "install: the unit runs as the system user 'tandem':" \
	  "useradd --system --home-dir /var/lib/tandem --shell /usr/sbin/nologin tandem"

clean:
	rm -rf build bin

-include $(LIB_OBJS:.o=.d) $(TOOL_OBJS:.o=.d) $(LEAN_OBJS:.o=.d) $(DAEMON_OBJS:.o=.d) $(ASAN_LIB_OBJS:.o=.d)
