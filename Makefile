# kiln: the README's commands. Each target installs what it needs first
# (scripts/install-deps is idempotent and quick when all is present).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build test test-asan demo demo-daemon bench clean

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

demo: build
	@scripts/demo $(BUILD)/kiln
	@scripts/demo-daemon $(BUILD)/kiln

# The daemon: a spool, a queued run, kiln status while it trains, a clean stop.
demo-daemon: build
	@scripts/demo-daemon $(BUILD)/kiln

bench: build
	@bench/ingest/run $(BUILD)/kiln
	@bench/tokenize/run $(BUILD)/kiln
	@bench/transe/run
	@bench/sampler/run $(BUILD)/kiln
	@bench/train/run $(BUILD)/kiln
	@bench/finetune/run $(BUILD)/kiln

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
