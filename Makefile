# Sessionflow. The two commands that matter: `make dev` and `make test`.
GO      ?= go
BIN     := $(CURDIR)/bin
DEVDIR  := $(CURDIR)/.dev

.PHONY: all build tools test vet fmt-check fuzz bench bench-sessionize dev clean

all: build

build:
	$(GO) build -o $(BIN)/ ./starter

## tools: the MinIO server the integration tests run (internal/miniotest),
## built once from a pinned version into $(BIN). Tests use $SESSIONFLOW_MINIO,
## else bin/minio, else minio on PATH.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
tools: $(BIN)/minio

$(BIN)/minio:
	@echo "Building MinIO $(MINIO_VERSION) into $(BIN); the first build takes ~5 minutes."
	GOBIN=$(BIN) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

## test: formatting, vet, and the whole suite with the race detector.
test: fmt-check vet tools
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -w needed on:"; echo "$$out"; exit 1; fi

## fuzz: run the event-decoding fuzzer (FUZZTIME, default 60s).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./session

## bench: Go benchmarks of the rules engine, then `starter sessionize` end to end.
bench: bench-sessionize
	$(GO) test -run '^$$' -bench . -benchtime 3x ./session

# 5,000,000 events of 100,000 users (about 480 MB), generated once.
BENCH_EVENTS ?= 5000000
BENCH_FILE   := $(DEVDIR)/bench/clicks-$(BENCH_EVENTS).jsonl
$(BENCH_FILE): | build
	mkdir -p $(dir $@)
	$(BIN)/starter generate --num-users 100000 --events $(BENCH_EVENTS) --out $@.tmp && mv $@.tmp $@

bench-sessionize: build $(BENCH_FILE)
	@ls -l $(BENCH_FILE)
	$(BIN)/starter sessionize --in $(BENCH_FILE) --out /dev/null

## dev: run the product locally. Today that is the batch engine on a sample
## clickstream; the full stack (Temporal, MinIO, Kafka, workers) arrives with
## the dev-stack issue.
dev: build
	mkdir -p $(DEVDIR)
	$(BIN)/starter generate --num-users 20 --events 400 --out $(DEVDIR)/sample-clicks.jsonl
	$(BIN)/starter sessionize --in $(DEVDIR)/sample-clicks.jsonl --end-marker page_name=logout --format table
	@echo
	@echo "Sessionized $(DEVDIR)/sample-clicks.jsonl. The streaming dev stack (Temporal + MinIO + Kafka) is not built yet."

clean:
	rm -rf $(BIN) $(DEVDIR)
