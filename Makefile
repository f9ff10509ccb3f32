# prefect-proxy (Go). A newcomer needs two commands: `make run` and `make test`.
# Both install what is missing on a fresh Debian/Ubuntu machine (redis-server,
# python3-venv, a pinned Prefect in .venv/).

PREFECT_VERSION ?= 3.6.29
export PREFECT_VERSION
GO ?= go
# End-to-end tests start real processes; keep the whole run bounded.
TEST_TIMEOUT ?= 30m
GO_PKGS := ./...

.PHONY: help run test test-deps deps prefect-venv build vet fmt-check unit e2e clean compose-check

help:
	@echo "make run    - start Prefect (if none answers) and the api on :8085"
	@echo "make test   - install test deps, go vet, gofmt check, all tests with -race against real Redis and Prefect"
	@echo "make unit   - unit tests only (no Prefect, no Redis server)"
	@echo "make build  - build bin/api, bin/worker and bin/relay-setup"
	@echo "PREFECT_VERSION=3.9.1 make test   - the same against another Prefect release"

run:
	@bash scripts/deps.sh
	@bash scripts/run-local.sh

deps:
	@bash scripts/deps.sh

prefect-venv: deps
	@bash scripts/prefect-venv.sh

# --version of the binaries: set here, else Go's own VCS stamp is used.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/api ./cmd/worker ./cmd/relay-setup

vet:
	$(GO) vet $(GO_PKGS)

fmt-check:
	@out="$$(gofmt -l cmd internal)"; \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting:"; echo "$$out"; exit 1; fi

# One Prefect server for the whole run (withprefect exports PREFECT_TEST_API_URL
# to every test package); each test starts its own redis-server.
test-deps:
	@bash scripts/deps.sh --test

test: test-deps prefect-venv vet fmt-check
	$(GO) build -o bin/withprefect ./internal/testenv/cmd/withprefect
	bin/withprefect -- $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(GO_PKGS)

unit:
	$(GO) test -race -short -count=1 $(GO_PKGS)

e2e: prefect-venv
	$(GO) build -o bin/withprefect ./internal/testenv/cmd/withprefect
	bin/withprefect -- $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -v ./internal/e2e/...

compose-check:
	@python3 -c 'import sys, yaml; yaml.safe_load(open("docker-compose.yml")); print("docker-compose.yml parses")'

clean:
	rm -rf bin .run

# Read-path benchmarks (docs/BENCHMARKS.md). They print numbers and never fail
# on time. BENCH_PREFECT_URL=http://127.0.0.1:4299/api adds the real-Prefect cases;
# BENCH_API_BINARY=$PWD/bin/api (after make build) the cmd/api-in-its-own-process case.
.PHONY: bench
bench:
	$(GO) test -run '^$$' -bench 'Poll/upstream=fast-fake' -benchtime 4000x ./internal/bench/
	$(GO) test -run '^$$' -bench 'History' -benchtime 10x ./internal/bench/
	@if [ -n "$$BENCH_PREFECT_URL" ]; then $(GO) test -run '^$$' -bench 'Poll/upstream=prefect' -benchtime 400x ./internal/bench/; fi
	@if [ -n "$$BENCH_API_BINARY" ]; then $(GO) test -run '^$$' -bench 'Poll/proxy=api-binary' -benchtime 4000x ./internal/bench/; fi
