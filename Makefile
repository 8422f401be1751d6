# zlh-controller - plain make + pkg-config (CONVENTIONS.md "Build").
#
#   make            build every binary into build/bin/
#   make check      install missing packages, build, run every test
#   make asan       the whole suite under ASan + UBSan (build-asan/)
#   make demo       controller + zlh-sim + throwaway PostgreSQL, live
#   make bench      benchmarks that print figures
#   make chaos      the long chaos run
#   make install    PREFIX=/usr/local DESTDIR=
#
# Layers are static archives, linked in dependency order
# (lib <- specs <- db <- reconcilers <- controller; DESIGN.md section 3).
# gnu11, not c11: the code uses POSIX and GNU features (clock_gettime,
# strdup, pthread, statement expressions in cleanup.h's TAKE_PTR).

B ?= build
PREFIX ?= /usr/local
CC ?= cc
PKGS := libcurl yaml-0.1 libpq jansson libsystemd openssl libmicrohttpd

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

WARN := -Wall -Wextra -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wshadow -Werror \
        -Wno-missing-field-initializers
OPT ?= -O2 -g
SAN ?=
CFLAGS_ALL := -std=gnu11 $(OPT) $(SAN) $(WARN) -D_GNU_SOURCE -pthread -I. -Ilib \
        -DZLH_SOURCE_DIR=\"$(CURDIR)\" -DZLH_PREFIX=\"$(PREFIX)\" $(PKG_CFLAGS) $(CFLAGS) -MMD -MP
LDFLAGS_ALL := $(SAN) -pthread $(LDFLAGS)
LDLIBS_ALL := $(PKG_LIBS) -lm

# --- layers --------------------------------------------------------------
LAYERS := zlh specs db recon ctl
SRC_zlh := $(wildcard lib/*.c)
SRC_specs := $(wildcard specs/*.c)
SRC_db := $(wildcard db/*.c)
SRC_recon := $(wildcard reconcilers/*.c)
SRC_ctl := $(filter-out controller/main.c,$(wildcard controller/*.c))

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))
# Archives of the layers that have sources, highest layer first (link order).
ARCHIVES := $(foreach l,ctl recon db specs zlh,$(if $(SRC_$(l)),$(B)/lib$(l).a))

define LAYER_RULE
$(B)/lib$(1).a: $(call obj,$(SRC_$(1)))
	@mkdir -p $$(@D)
	$$(AR) rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(if $(SRC_$(l)),$(eval $(call LAYER_RULE,$(l)))))

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# registry.c lists the reconcilers whose headers exist (__has_include):
# a new reconcilers/NAME.h must rebuild it.
$(B)/obj/controller/registry.o: $(wildcard reconcilers/*.h)

# --- binaries ------------------------------------------------------------
BINS :=
ifneq ($(wildcard controller/main.c),)
BINS += $(B)/bin/zlh-controller
$(B)/bin/zlh-controller: $(call obj,controller/main.c) $(ARCHIVES)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)
endif

SRC_cli := $(wildcard cli/*.c)
ifneq ($(SRC_cli),)
BINS += $(B)/bin/zlhctl
$(B)/bin/zlhctl: $(call obj,$(SRC_cli)) $(ARCHIVES)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)
endif

# zlh-sim links lib/ only: a simulator that shared the clients' or the
# specs' code would share their mistakes (DESIGN.md section 3).
SRC_sim := $(wildcard test/sim/*.c)
ifneq ($(SRC_sim),)
BINS += $(B)/bin/zlh-sim
$(B)/bin/zlh-sim: $(call obj,$(SRC_sim)) $(B)/libzlh.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)
endif

# --- tests ---------------------------------------------------------------
# test/unit/test-*.c: one cmocka binary each. test/integration/itest-*.c:
# C programs that talk to a real PostgreSQL (and zlh-sim); test/*/test-*.sh:
# shell tests. test/run-tests.sh runs them all and prints the summary line.
SRC_testlib := $(wildcard test/lib/*.c)
UNIT_SRCS := $(wildcard test/unit/test-*.c)
UNIT_BINS := $(patsubst test/unit/%.c,$(B)/test/%,$(UNIT_SRCS))
ITEST_SRCS := $(wildcard test/integration/itest-*.c test/chaos/itest-*.c)
ITEST_BINS := $(patsubst %.c,$(B)/test/%,$(notdir $(ITEST_SRCS)))

$(B)/test/test-%: $(call obj,test/unit/test-%.c) $(call obj,$(SRC_testlib)) $(ARCHIVES)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) $(CMOCKA_LIBS)

# Two pattern rules: make picks the one whose source exists.
$(B)/test/itest-%: $(B)/obj/test/integration/itest-%.o $(call obj,$(SRC_testlib)) $(ARCHIVES)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) $(CMOCKA_LIBS)
$(B)/test/itest-%: $(B)/obj/test/chaos/itest-%.o $(call obj,$(SRC_testlib)) $(ARCHIVES)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) $(CMOCKA_LIBS)

# --- fuzz (clang libFuzzer) ------------------------------------------------
FUZZ_SRCS := $(wildcard test/fuzz/fuzz-*.c)
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. -Ilib \
        -DZLH_SOURCE_DIR=\"$(CURDIR)\" -DZLH_PREFIX=\"$(PREFIX)\" $(PKG_CFLAGS)
FUZZ_BINS := $(patsubst test/fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRCS))
$(B)/fuzz/%: test/fuzz/%.c $(SRC_specs) $(SRC_zlh)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ $< $(SRC_specs) $(SRC_zlh) $(LDLIBS_ALL)

FUZZ_SECONDS ?= 60

# --- phony targets -----------------------------------------------------------
.PHONY: all deps check unit test asan demo bench chaos fuzz format format-check install clean

all: $(BINS)

deps:
	@sh contrib/deps.sh

tests: $(BINS) $(UNIT_BINS) $(ITEST_BINS)

check: deps
	$(MAKE) --no-print-directory tests
	$(MAKE) --no-print-directory format-check
	B=$(B) bash test/run-tests.sh
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SECONDS_CHECK)

FUZZ_SECONDS_CHECK ?= 60

asan: deps
	$(MAKE) --no-print-directory B=build-asan OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" tests
	B=build-asan ZLH_ASAN=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 bash test/run-tests.sh

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
		n=$$(basename $$f); mkdir -p $(B)/fuzz/corpus-$$n; \
		cp -n test/fuzz/corpus/* $(B)/fuzz/corpus-$$n/ 2>/dev/null || true; \
		echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
			$(B)/fuzz/corpus-$$n >$(B)/fuzz/$$n.log 2>&1 || { tail -50 $(B)/fuzz/$$n.log; exit 1; }; \
		grep -E '^#[0-9]+.*DONE' $(B)/fuzz/$$n.log | tail -1; \
	done

demo: deps all
	bash contrib/demo.sh

bench: deps all
	bash bench/run.sh

chaos: deps tests
	B=$(B) ZLH_CHAOS_FULL=1 bash test/run-tests.sh chaos

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)
# FORMAT_STRICT=1 makes a formatting difference fail the build.
FORMAT_STRICT ?= 0
format-check:
	@if clang-format --dry-run -Werror $(FORMAT_SRCS) 2>$(B)/format.log; then echo "format: clean"; \
	else grep -c 'clang-format-violations' $(B)/format.log | sed 's/^/format: violations: /'; \
		[ "$(FORMAT_STRICT)" != 1 ] || { head -20 $(B)/format.log; exit 1; }; fi

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/zlh-controller/crds \
		$(DESTDIR)$(PREFIX)/share/zlh-controller/migrations
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 crds/*.yaml $(DESTDIR)$(PREFIX)/share/zlh-controller/crds/
	install -m 644 db/migrations/*.sql $(DESTDIR)$(PREFIX)/share/zlh-controller/migrations/

clean:
	rm -rf build build-asan

-include $(shell find $(B) -name '*.d' 2>/dev/null)
