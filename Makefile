# Sessionflow. The two commands that matter: `make dev` and `make test`.
GO      ?= go
BIN     := $(CURDIR)/bin
DEVDIR  := $(CURDIR)/.dev

.PHONY: all build tools test smoke vet lint fmt-check fuzz bench bench-sessionize bench-batch fault dev clean

all: build

build:
	$(GO) build -o $(BIN)/ ./starter ./worker ./deploy/devstack

## tools: the MinIO server the integration tests run (internal/miniotest),
## built once from a pinned version into $(BIN). Tests use $SESSIONFLOW_MINIO,
## else bin/minio, else minio on PATH.
MINIO_VERSION    := v0.0.0-20260212201848-7aac2a2c5b7c
TEMPORAL_VERSION := v1.5.1
tools: $(BIN)/minio $(BIN)/temporal

$(BIN)/minio:
	@echo "Building MinIO $(MINIO_VERSION) into $(BIN); the first build takes ~5 minutes."
	GOBIN=$(BIN) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

$(BIN)/temporal:
	@echo "Building the temporal CLI $(TEMPORAL_VERSION) (dev server + UI) into $(BIN); the first build takes ~5 minutes."
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_VERSION)

## test: formatting, vet, and the whole suite with the race detector.
## The integration tests run smaller under the race detector (it slows the
## in-process Temporal server about eightfold), so they run again at full size
## without it.
test: fmt-check vet lint $(BIN)/minio
	$(GO) test -race -count=1 -timeout 30m ./...
	$(GO) test -count=1 -timeout 30m -run 'Integration|EndToEnd' ./workflows ./ingest

vet:
	$(GO) vet ./...

## lint: staticcheck over the whole module, tests included, and again over
## ./fault with its build tag (it is only built with -tags fault); then
## Temporal's workflowcheck, which follows every workflow function into the
## code it calls and reports what is not deterministic (map iteration,
## goroutines, time.Now, ...). Suppress a false positive with an inline
## `//workflowcheck:ignore <why>` on the line; workflowcheck.yaml holds only
## what cannot be marked inline (the standard library).
# Cost: both tools read every dependency, the Temporal server included, and
# not through tests alone (bench/stream imports it), so skipping tests with
# -tests=false would save nothing. What keeps lint cheap in make test is
# running it after vet: staticcheck's `go list -export` reuses the compiled
# packages vet left in the build cache, and staticcheck keeps its findings per
# package in its own cache (STATICCHECK_CACHE), so a warm run only re-reads
# what changed. Bump a version below and `rm bin/staticcheck bin/workflowcheck`.
STATICCHECK_VERSION   := v0.8.2
WORKFLOWCHECK_VERSION := v0.6.0
lint: $(BIN)/staticcheck $(BIN)/workflowcheck
	$(BIN)/staticcheck ./...
	$(BIN)/staticcheck -tags fault ./fault
	$(BIN)/workflowcheck -config workflowcheck.yaml ./...

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(BIN)/workflowcheck:
	GOBIN=$(BIN) $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -w needed on:"; echo "$$out"; exit 1; fi

## fuzz: run the event-decoding fuzzers (FUZZTIME each, default 60s): the
## decoder alone, and its one-pass fast path against the full parse.
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./session
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFastPath$$' -fuzztime $(FUZZTIME) ./session

## bench: everything measured, side by side in one run (BENCHMARKS.md): the
## Go benchmarks of the rules engine and the ingest path, the streaming
## pipeline end to end against temporaltest and the dev server with Temporal's
## own SignalWithStart ceiling and the worker's memory at 10,000 open sessions
## (bench/stream, ~20 min), then the batch engine against DuckDB and pandas on
## 10M events (bench-batch).
bench: build tools
	$(GO) test -run '^$$' -bench . -benchtime 3x ./session ./ingest
	$(GO) run ./bench/stream --bin $(BIN)
	$(MAKE) bench-batch

## fault: the reliability suite (RELIABILITY.md): real worker, dev server and
## MinIO processes, one fault injected per case; ~25 minutes.
fault: build tools
	$(GO) test -tags fault -count=1 -timeout 90m -v ./fault

# 5,000,000 events of 100,000 users (about 480 MB), generated once.
BENCH_EVENTS ?= 5000000
BENCH_FILE   := $(DEVDIR)/bench/clicks-$(BENCH_EVENTS).jsonl
$(BENCH_FILE): | build
	mkdir -p $(dir $@)
	$(BIN)/starter generate --num-users 100000 --events $(BENCH_EVENTS) --out $@.tmp && mv $@.tmp $@

## bench-batch: starter sessionize, DuckDB and pandas side by side on one
## file (BATCH_EVENTS, default 10M), ROUNDS times interleaved (default 5):
## medians, spread, peak RSS and the median per-round ratios. Installs DuckDB
## from npm and pandas from Debian when missing.
BATCH_EVENTS ?= 10000000
ROUNDS       ?= 5
# npm install, not npm ci: npm 11 rejects its own lock file here, which leaves
# out the other platforms' optional DuckDB bindings. package.json pins the version.
bench-batch: build
	@/usr/bin/python3 -c 'import pandas' 2>/dev/null || (apt-get update -qq && apt-get install -y -qq python3-pandas)
	cd bench/batch && npm install --no-audit --no-fund --no-save --silent
	bench/batch/run.sh $(BATCH_EVENTS) $(ROUNDS)

bench-sessionize: build $(BENCH_FILE)
	@ls -l $(BENCH_FILE)
	$(BIN)/starter sessionize --in $(BENCH_FILE) --out /dev/null

## dev: the whole product on this machine: Temporal dev server + UI, MinIO,
## an in-process Kafka-protocol broker, the worker with two pipelines and the
## generator. State stays in .dev/ (a second run resumes); Ctrl-C stops it.
## Point it at your own services with TEMPORAL_ADDRESS, KAFKA_BROKERS and
## S3_ENDPOINT (+ S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY).
dev: build tools
	$(BIN)/devstack --dir $(DEVDIR) --bin $(BIN)

## smoke: start the dev stack headless in a scratch folder, wait for closed
## sessions of both pipelines in Parquet, the UI and `starter sessions list`.
smoke: build tools
	@command -v kcat >/dev/null || (apt-get update -qq && apt-get install -y -qq kcat)
	@test -d bench/batch/node_modules/@duckdb/node-api || (cd bench/batch && npm install --no-audit --no-fund --no-save --silent)
	rm -rf $(DEVDIR)/smoke
	$(BIN)/devstack --dir $(DEVDIR)/smoke --bin $(BIN) --smoke --rate 200 --kcat kcat --duckdb-check deploy/devstack/readme_duckdb.mjs

clean:
	rm -rf $(BIN) $(DEVDIR)
