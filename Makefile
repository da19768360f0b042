# Troy: the two everyday commands.
#   make demo   install what is missing, build, run troy on the built-in sample
#   make test   install what is missing, build, run every test (what CI runs)
#   make install   copy build/troy to $(PREFIX)/bin (default /usr/local/bin), so `troy` runs from anywhere
# Other targets: deps, build, unit, e2e, asan, fuzz, bench, clean.

JOBS      ?= $(shell nproc)
BUILD     ?= build
ASAN      ?= build-asan
FUZZ      ?= build-fuzz
FUZZ_SECONDS ?= 60
# make install: PREFIX=/usr for /usr/bin; DESTDIR stages into a package root.
PREFIX    ?= /usr/local
DESTDIR   ?=
# make test: a fixed seed and input count, so CI gives the same verdict each run.
# A VHDX input expands to a file of up to ~50 MiB whose log is read whole
# (~25-80 ms a run under ASan; 20000 runs were 4-8 minutes of CI), a VHD
# input costs ~0.5 ms. Exploring is `make fuzz`'s job, not CI's.
FUZZ_RUNS ?= 100000 6000
CMAKE_GEN := -G "Unix Makefiles"

.PHONY: demo test deps build install unit e2e asan fuzz bench clean

demo: deps build
	bash scripts/demo.sh $(BUILD)/troy

# Each phase prints the time it starts (CI's log shows where the minutes go).
test: deps build asan fuzz-build
	@echo "== $$(date -u +%T) Release tests"
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)
	@echo "== $$(date -u +%T) ASan+UBSan tests"
	cd $(ASAN) && ctest --output-on-failure -j$(JOBS) -LE oracle
	@echo "== $$(date -u +%T) fuzzing"
	bash scripts/fuzz.sh $(FUZZ) --runs $(FUZZ_RUNS)
	@echo "== $$(date -u +%T) all tests passed"

deps:
	bash scripts/install-deps.sh

build:
	@echo "== $$(date -u +%T) Release build"
	cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# Builds first when build/troy is missing (as root after ./dev demo, it is not).
install:
	@test -x $(BUILD)/troy || $(MAKE) build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/troy $(DESTDIR)$(PREFIX)/bin/troy

# -O1, as the sanitizers' authors advise, and no PIE: at -O0 with PIE each
# troy run took a third of a second to start (half of it relocating 1.5
# million pointers), and the e2e cases start troy thousands of times.
asan:
	@echo "== $$(date -u +%T) ASan+UBSan build"
	cmake -S . -B $(ASAN) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DTROY_SANITIZE=ON \
	  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" -DCMAKE_EXE_LINKER_FLAGS=-no-pie >/dev/null
	cmake --build $(ASAN) -j$(JOBS)

fuzz-build:
	@echo "== $$(date -u +%T) fuzz build"
	cmake -S . -B $(FUZZ) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DTROY_SANITIZE=ON -DTROY_FUZZ=ON >/dev/null
	cmake --build $(FUZZ) -j$(JOBS) --target fuzz_vhd fuzz_vhdx

fuzz: deps fuzz-build
	bash scripts/fuzz.sh $(FUZZ) $(FUZZ_SECONDS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -E '^e2e\.'

e2e: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -R '^e2e\.'

bench: deps build
	bash bench/convert.sh $(BUILD)/troy
	bash bench/create.sh $(BUILD)/troy
	bash bench/apply.sh $(BUILD)/troy
	bash bench/merge.sh $(BUILD)/troy

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
