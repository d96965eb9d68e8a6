# optvq — build, test, install.
#   make              library (static + shared) and the optvq CLI, in build/
#   make demo         the main job on built-in defaults
#   make check        every test (installs missing Debian packages first)
#   make check-asan   the tests under AddressSanitizer + UBSan (build-asan/)
#   make bench        benchmarks (bench/README.md)
#   make fuzz         libFuzzer targets (clang) in build-fuzz/, each run FUZZ_SECONDS (60)
#   make install PREFIX=/usr/local
PREFIX ?= /usr/local
BUILD ?= build
ARCH ?= -march=native
OPT ?= -O2
SAN ?=
CC ?= cc
CXX ?= c++
# The optvq CLI and the MPI tests link MPI (the data-parallel glue in src/mpi,
# compiled and linked by mpicc); liboptvq never does: it calls hooks.
MPICC ?= mpicc

PKGS := cairo libpng libmicrohttpd
CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE
# The shared library exports the public header only (optvq/optvq.h pushes
# default visibility around its declarations); everything else stays hidden.
VISIBILITY := -fvisibility=hidden -DOPTVQ_BUILDING_LIBRARY
# Every pkg-config call is deferred (recursive `=`), so it runs when a recipe
# needs it, after `deps` has installed the packages; `demo` and `check` also
# re-enter make once `deps` is done.
CFLAGS += -std=c11 $(OPT) -g $(ARCH) -fopenmp -fno-math-errno -fPIC -Wall -Wextra $(SAN) \
          $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += -fopenmp $(SAN)
LIB_LIBS := -lopenblas -lyaml -lcjson -lpng -ljpeg -lz -lm
CLI_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lgif

LIB_SRC := $(wildcard src/core/*.c src/io/*.c src/quant/*.c src/nn/*.c src/model/*.c src/train/*.c src/eval/*.c)
CLI_SRC := $(wildcard src/cli/*.c src/viz/*.c src/mpi/*.c src/serve/*.c)
TEST_SRC := $(wildcard tests/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
# the page of `optvq serve`, compiled into the binary (src/serve/assets.h)
SERVE_WEB := $(sort $(wildcard src/serve/web/*.* src/serve/web/examples/*.png))
CLI_OBJ += $(BUILD)/obj/gen/serve_assets.o
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
DEPS := $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)

SONAME := liboptvq.so.0
VERSION := 0.1.0

.PHONY: all deps demo check check-asan test bench install uninstall clean fuzz fuzz-build
all: $(BUILD)/liboptvq.a $(BUILD)/$(SONAME) $(BUILD)/optvq $(BUILD)/optvq.pc

# What `deps` runs (tests/cli/fresh_make.sh swaps it to simulate a fresh machine).
DEPS_CMD ?= scripts/install-deps.sh
deps:
	@$(DEPS_CMD)

# the MPI glue needs mpi.h: mpicc finds it (at recipe time, after deps)
$(BUILD)/obj/src/mpi/%.o: src/mpi/%.c
	@mkdir -p $(dir $@)
	$(MPICC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(VISIBILITY) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/serve_assets.c: $(SERVE_WEB) scripts/embed-assets.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-assets.sh $@ src/serve/web $(SERVE_WEB)

$(BUILD)/obj/gen/serve_assets.o: $(BUILD)/gen/serve_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/liboptvq.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/$(SONAME): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) $(LDFLAGS) -o $@ $^ $(LIB_LIBS)
	ln -sf $(SONAME) $(BUILD)/liboptvq.so

$(BUILD)/optvq: $(CLI_OBJ) $(BUILD)/liboptvq.a
	$(MPICC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/liboptvq.a $(CLI_LIBS) $(LIB_LIBS)

$(BUILD)/optvq.pc: optvq.pc.in Makefile
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBS_PRIVATE@|$(LIB_LIBS)|g' $< > $@

# the serve request parsers are CLI code; the fuzz replay tests link them too
TEST_CLI_OBJ := $(BUILD)/obj/src/serve/multipart.o
$(BUILD)/run_tests: $(TEST_OBJ) $(TEST_CLI_OBJ) $(BUILD)/liboptvq.a
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(TEST_CLI_OBJ) $(BUILD)/liboptvq.a $(LIB_LIBS)

# The quantizer over MPI ranks (tests/cli/mpi_quant.sh runs it under mpirun).
MPI_SRC := $(wildcard src/mpi/*.c)
$(BUILD)/test_quant_mpi: tests/mpi/test_quant_mpi.c $(MPI_SRC) $(wildcard src/mpi/*.h) $(BUILD)/liboptvq.a
	$(MPICC) $(CPPFLAGS) $(CFLAGS) -pthread -o $@ tests/mpi/test_quant_mpi.c $(MPI_SRC) $(BUILD)/liboptvq.a \
	    $(LDFLAGS) $(LIB_LIBS)

# The main job on built-in defaults.
# make re-enters itself after `deps`, so nothing is built from what make saw
# before the packages were there.
DEMO_ARGS ?=
demo: deps
	$(MAKE) all
	$(BUILD)/optvq demo $(DEMO_ARGS)

# The whole test suite: unit + parity tests, then the CLI tests.
CHECK_RUN ?= tests/run.sh
check: deps
	$(MAKE) all $(BUILD)/run_tests $(BUILD)/test_quant_mpi
	OPTVQ_BIN=$(BUILD)/optvq OPTVQ_CFLAGS="$(SAN)" OPTVQ_LIBS="$(LIB_LIBS)" $(CHECK_RUN) $(BUILD)

test: check

check-asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" check

# libFuzzer targets (fuzz/): the parsers and what they feed, built with clang
# under ASan + UBSan into build-fuzz/; `make fuzz` runs each for FUZZ_SECONDS
# and fails on any crash, leak, timeout or out-of-memory (fuzz/run.sh).
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_BUILD := build-fuzz
FUZZ_TARGETS := npy safetensors pth config idx png jpeg multipart
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -O1 -g -Wall -Wextra -Wno-unknown-pragmas -Wno-source-uses-openmp -Wno-unused-parameter $(FUZZ_SAN)
FUZZ_LIB_SRC := $(wildcard src/core/*.c src/io/*.c src/quant/*.c) src/model/config.c src/serve/multipart.c
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/liboptvq-fuzz.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(wildcard fuzz/*.h) $(FUZZ_BUILD)/liboptvq-fuzz.a
	$(FUZZ_CC) $(CPPFLAGS) -Ifuzz $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/liboptvq-fuzz.a $(LIB_LIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

bench: all
	$(MAKE) -C bench BUILD=../$(BUILD) LIB_LIBS="$(LIB_LIBS)"

install: all
	install -d $(DESTDIR)$(PREFIX)/include/optvq $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/optvq/*.h $(DESTDIR)$(PREFIX)/include/optvq/
	install -m 644 $(BUILD)/liboptvq.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/$(SONAME) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/liboptvq.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBS_PRIVATE@|$(LIB_LIBS)|g' optvq.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/optvq.pc
	install -m 755 $(BUILD)/optvq $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/share/optvq/models
	cp -R models/. $(DESTDIR)$(PREFIX)/share/optvq/models/

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/include/optvq $(DESTDIR)$(PREFIX)/lib/liboptvq.* \
	       $(DESTDIR)$(PREFIX)/lib/pkgconfig/optvq.pc $(DESTDIR)$(PREFIX)/bin/optvq \
	       $(DESTDIR)$(PREFIX)/share/optvq

clean:
	rm -rf build build-asan $(FUZZ_BUILD)

-include $(DEPS) $(FUZZ_LIB_OBJ:.o=.d)
