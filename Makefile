# alloy: merge and edit transformer checkpoints.
#
#   make            build liballoy.a and the alloy binary into build/
#   make test       unit tests (cmocka, one executable per tests/test_*.c) + end-to-end CLI tests
#   make asan       the same suite built with AddressSanitizer + UBSan, in build-asan/
#   make demo       a real job on the example checkpoints in examples/
#   make bench      benchmarks (not part of test); figures go to bench/RESULTS.md by hand
#   make fuzz       libFuzzer targets (clang), each run FUZZ_TIME seconds; see tests/fuzz/
#   make install PREFIX=/usr/local
#   make MPI=1      alloy on MPI (mpicc; Open MPI or MPICH) into build-mpi/: run it
#                   with mpirun -n N; make MPI=1 test-mpi runs the distributed tests
#
# Sources are discovered by folder, so adding a module needs no edit here.

# ---- user settings ----------------------------------------------------------
# MPI=1: compile with mpicc, add core/mpi/ and -DAL_MPI; the default build has no MPI.
MPI     ?=
ifneq ($(MPI),)
  CC    := mpicc
  BUILD ?= build-mpi
endif
CC      ?= gcc
PREFIX  ?= /usr/local
BUILD   ?= build
# No -Ofast/-ffast-math: TIES sign election, NaN handling and SLERP's near-parallel
# fallback rely on IEEE semantics.
OPT     ?= -O2
CFLAGS_EXTRA ?=
LDFLAGS_EXTRA ?=
# NO_OMP=1 builds without OpenMP; results must be identical either way.
NO_OMP  ?=

PKGS     := yaml-0.1 hdf5 zlib jansson libpcre2-8 openblas
WARN     := -Wall -Wextra -Werror -Wvla -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-missing-field-initializers
CFLAGS   := -std=c11 -D_GNU_SOURCE -pthread $(OPT) -g $(WARN) -MMD -MP \
            $(shell pkg-config --cflags $(PKGS)) $(CFLAGS_EXTRA)
LDLIBS   := $(shell pkg-config --libs $(PKGS)) -lm -pthread $(LDFLAGS_EXTRA)

# OpenMP: detected by compiling an empty input (as llm.c does).
ifeq ($(NO_OMP),)
  ifeq ($(shell echo | $(CC) -fopenmp -x c -E - >/dev/null 2>&1; echo $$?),0)
    CFLAGS += -fopenmp
    LDLIBS += -fopenmp
    HAVE_OMP := 1
  endif
endif
# Without OpenMP the `#pragma omp` lines are inert by design, not mistakes.
ifeq ($(HAVE_OMP),)
  CFLAGS += -Wno-unknown-pragmas
endif

LIB_SRCS  := $(wildcard core/*.c io/*.c recipes/*.c merge/*.c edit/*.c)
ifneq ($(MPI),)
  LIB_SRCS += $(wildcard core/mpi/*.c)
  CFLAGS   += -DAL_MPI
endif
CMD_SRCS  := $(wildcard cmd/*.c)
TEST_SRCS := $(wildcard tests/test_*.c)
TUTIL_SRCS:= $(wildcard tests/util/*.c)

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CMD_OBJS  := $(CMD_SRCS:%.c=$(BUILD)/%.o)
TUTIL_OBJS:= $(TUTIL_SRCS:%.c=$(BUILD)/%.o)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
BENCH_BINS:= $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)
REPLAY_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz-replay/%)

LIB := $(BUILD)/liballoy.a
BIN := $(BUILD)/alloy

.PHONY: all test test-mpi unit e2e asan fuzz fuzz-bins demo bench bench-tools install clean
all: $(BIN)

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CMD_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(CMD_OBJS) $(LIB) $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The element loops of the merge kernels and dtype converters vectorize at -O3
# (still IEEE: no -ffast-math, so results are the same bits as at -O2).
$(BUILD)/merge/%.o $(BUILD)/core/dtype.o: CFLAGS += $(KERNEL_OPT)
KERNEL_OPT ?= -O3

$(BUILD)/tests/%: tests/%.c $(TUTIL_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(TUTIL_OBJS) $(LIB) $(LDLIBS) $(shell pkg-config --libs cmocka)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench-tools: $(BENCH_BINS)

# Fuzz targets: with libFuzzer (make fuzz), and as plain replayers of the seeds and of
# past crashes (tests/fuzz/regressions/), which e2e runs.
$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/fuzz-replay/%: tests/fuzz/%.c tests/fuzz/replay_main.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< tests/fuzz/replay_main.c $(LIB) $(LDLIBS)

fuzz-bins: $(FUZZ_BINS)

FUZZ_TIME ?= 60
fuzz:
	$(MAKE) CC=clang BUILD=build-fuzz NO_OMP=1 OPT="-O1 -fno-omit-frame-pointer" \
	  CFLAGS_EXTRA="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
	  LDFLAGS_EXTRA="-fsanitize=address,undefined" fuzz-bins
	sh tests/fuzz/run.sh build-fuzz/fuzz $(FUZZ_TIME) $(FUZZ_TARGETS)

# Unit tests run from the repository root so fixtures resolve as tests/fixtures/...
unit: $(TEST_BINS)
	@fail=0; for t in $(TEST_BINS); do echo "== $$t"; ./$$t || fail=1; done; \
	if [ $$fail -ne 0 ]; then echo "unit tests: FAILED"; exit 1; fi

e2e: $(BIN) $(BENCH_BINS) $(REPLAY_BINS)
	@ALLOY=$(abspath $(BIN)) GEN=$(abspath $(BUILD)/bench/gen_llama) REPLAY=$(abspath $(BUILD)/fuzz-replay) \
	  sh tests/e2e/run.sh

# Distributed tests: make MPI=1 test-mpi (needs Open MPI or MPICH: tools/deps.sh). The
# MPI build's alloy is compared with the default build's, which is built first.
test-mpi: $(BIN) $(BUILD)/tests/mpi/stats_cmp
	@$(MAKE) --no-print-directory MPI= BUILD=build build/alloy
	ALLOY=$(abspath build/alloy) ALLOY_MPI=$(abspath $(BIN)) STATS_CMP=$(abspath $(BUILD)/tests/mpi/stats_cmp) \
	  sh tests/mpi/t_mpi.sh

$(BUILD)/tests/mpi/%: tests/mpi/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# unit first, then e2e (sequential so the logs read in order; builds still use -j)
test: $(TEST_BINS) $(BIN) $(BENCH_BINS) $(REPLAY_BINS)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory e2e

# Sanitizer build: separate tree so it never mixes objects with the normal build.
asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer" \
	  CFLAGS_EXTRA="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  LDFLAGS_EXTRA="-fsanitize=address,undefined" test

demo: $(BIN)
	sh examples/demo.sh $(abspath $(BIN))

bench: $(BIN) bench-tools
	sh bench/run.sh

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/alloy \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/alloy
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/liballoy.a
	install -m 644 alloy.h $(DESTDIR)$(PREFIX)/include/alloy/alloy.h
	for d in core io recipes merge edit; do \
	  for h in $$d/*.h; do [ -f "$$h" ] || continue; \
	    case $$h in */backend.h|*_internal.h) continue;; esac; \
	    install -d $(DESTDIR)$(PREFIX)/include/alloy/$$d; \
	    install -m 644 $$h $(DESTDIR)$(PREFIX)/include/alloy/$$d/; done; done
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@PKGS@|$(PKGS)|g' alloy.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/alloy.pc

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJS:.o=.d) $(CMD_OBJS:.o=.d) $(TUTIL_OBJS:.o=.d) $(TEST_BINS:=.d)
