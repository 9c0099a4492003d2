# kiln: the README's commands. Each target installs what it needs first
# (scripts/install-deps is idempotent and quick when all is present).
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 60
FUZZ_CI_TIME ?= 25
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build test test-asan demo demo-daemon bench clean fuzz fuzz-ci

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DKILN_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DKILN_WERROR=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

# libFuzzer targets (clang): every parser of outside input, FUZZ_TIME seconds
# each, one after the other, under nice (docs/reliability.md, "Fuzzing").
fuzz: deps
	@scripts/fuzz -b $(FUZZ_BUILD) $(FUZZ_TIME)

# The short pass CI runs: FUZZ_CI_TIME seconds a target (13 targets: about 7
# minutes with the build on 2 cores).
fuzz-ci: deps
	@scripts/fuzz -b $(FUZZ_BUILD) $(FUZZ_CI_TIME)

demo: build
	@scripts/demo $(BUILD)/kiln
	@scripts/demo-daemon $(BUILD)/kiln

# The daemon: a spool, a queued run, kiln status while it trains, a clean stop.
demo-daemon: build
	@scripts/demo-daemon $(BUILD)/kiln

# Korean and Japanese (the bundled UDHR excerpts): ingest, a vocabulary that
# keeps the text intact, tokenize, samples as pieces, ICU's words.
.PHONY: demo-cjk
demo-cjk: build
	@scripts/demo-cjk $(BUILD)/kiln

bench: build
	@bench/ingest/run $(BUILD)/kiln
	@bench/tokenize/run $(BUILD)/kiln
	@bench/transe/run
	@bench/sampler/run $(BUILD)/kiln
	@bench/train/run $(BUILD)/kiln
	@bench/finetune/run $(BUILD)/kiln
	@bench/electra/run $(BUILD)/kiln
	@bench/ernie/run $(BUILD)/kiln
	@bench/daemon/run $(BUILD)/kiln

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
