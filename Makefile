# prefect-proxy (Go). A newcomer needs two commands: `make run` and `make test`.
# Both install what is missing on a fresh Debian/Ubuntu machine (redis-server,
# python3-venv, a pinned Prefect in .venv/).

PREFECT_VERSION ?= 3.6.29
export PREFECT_VERSION
# The database of the tests' shared Prefect server: postgres (a private
# PostgreSQL cluster, as Dalgo runs Prefect in production), or sqlite. The
# whole suite on one SQLite Prefect stalled it ("database is locked" for a
# minute) and failed tests that happened to write meanwhile.
PREFECT_DB ?= postgres
export PREFECT_DB
GO ?= go
# End-to-end tests start real processes; keep the whole run bounded.
TEST_TIMEOUT ?= 45m
# Tests of one package run at most this many at once (go test's default is
# GOMAXPROCS): they share one Prefect server on SQLite, which stalls when too
# many tests write to it together (4 at once hung it on a 2-core machine).
TEST_PARALLEL ?= 2
GO_PKGS := ./...

.PHONY: help run test test-deps deps prefect-venv build vet fmt-check tidy-check staticcheck cyclo unit e2e clean compose-check deploy-check image docker-smoke

help:
	@echo "make run    - start Prefect (if none answers) and the api on :8085"
	@echo "make test   - install test deps; go vet, gofmt, go mod tidy, staticcheck and gocyclo checks; all tests with -race against real Redis and Prefect"
	@echo "make unit   - unit tests only (-short: no Prefect, no redis-server; in-process fakes such as miniredis)"
	@echo "make build  - build bin/api, bin/worker and bin/relay-setup"
	@echo "make image  - build the Docker image (IMAGE_TARGET=worker for the worker's)"
	@echo "make deploy-check - validate docker-compose.yml, the Dockerfile and deploy/kubernetes"
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

# staticcheck, pinned, built from the Go module proxy into bin/tools/ (one
# binary per version, so changing the pin rebuilds it).
STATICCHECK_VERSION := v0.8.2
STATICCHECK := bin/tools/staticcheck-$(STATICCHECK_VERSION)

$(STATICCHECK):
	@mkdir -p bin/tools/.install
	GOBIN=$(CURDIR)/bin/tools/.install $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv bin/tools/.install/staticcheck $@

staticcheck: $(STATICCHECK)
	$(STATICCHECK) $(GO_PKGS)

# No function outside tests above cyclomatic complexity 15 (gocyclo, pinned).
GOCYCLO_VERSION := v0.6.0
GOCYCLO := bin/tools/gocyclo-$(GOCYCLO_VERSION)

$(GOCYCLO):
	@mkdir -p bin/tools/.install
	GOBIN=$(CURDIR)/bin/tools/.install $(GO) install github.com/fzipp/gocyclo/cmd/gocyclo@$(GOCYCLO_VERSION)
	mv bin/tools/.install/gocyclo $@

cyclo: $(GOCYCLO)
	@out="$$($(GOCYCLO) -over 15 -ignore '_test.go$$' cmd internal)"; \
	if [ -n "$$out" ]; then echo "gocyclo: functions above complexity 15:"; echo "$$out"; exit 1; fi

# go.mod and go.sum say exactly what the code imports (direct vs // indirect).
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

# One Prefect server for the whole run (withprefect exports PREFECT_TEST_API_URL
# to every test package); each test starts its own redis-server.
test-deps:
	@bash scripts/deps.sh --test

test: test-deps prefect-venv vet fmt-check tidy-check staticcheck cyclo deploy-check
	$(GO) build -o bin/withprefect ./internal/testenv/cmd/withprefect
	bin/withprefect -- $(GO) test -race -count=1 -parallel $(TEST_PARALLEL) -timeout $(TEST_TIMEOUT) $(GO_PKGS)

unit:
	$(GO) test -race -short -count=1 $(GO_PKGS)

e2e: prefect-venv
	$(GO) build -o bin/withprefect ./internal/testenv/cmd/withprefect
	bin/withprefect -- $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -v ./internal/e2e/...

# docker-compose.yml through Debian's docker-compose (installed if missing),
# the Dockerfile, and deploy/kubernetes decoded strictly into the Kubernetes
# API types (their tests are the Go module in deploy/).
deploy-check:
	@GO=$(GO) bash scripts/deploy-check.sh

compose-check: deploy-check

# Builds the images and runs the compose stack on a Docker engine (not part of
# `make test`, which must run without one). SMOKE_BASES=host: no registry needed.
docker-smoke:
	@bash scripts/docker-smoke.sh

# The api image (the worker's: IMAGE_TARGET=worker), stamped with the version.
IMAGE ?= prefect-proxy-go
IMAGE_TARGET ?= api
image:
	docker build -f Docker/Dockerfile --target $(IMAGE_TARGET) -t $(IMAGE):$$(git describe --tags --always --dirty) \
	  --build-arg VERSION=$$(git describe --tags --always --dirty) --build-arg COMMIT=$$(git rev-parse HEAD) .

clean:
	rm -rf bin .run

# Read-path benchmarks (docs/BENCHMARKS.md). They print numbers and never fail
# on time. BENCH_PREFECT_URL=http://127.0.0.1:4299/api adds the real-Prefect cases;
# BENCH_API_BINARY=1 the cmd/api-in-its-own-process case (internal/testenv builds and starts it).
# Capacity numbers of docs/SCALING.md (real redis-server and binaries, fake Prefect).
.PHONY: capacity
capacity: deps
	$(GO) test -run '^$$' -bench Capacity -benchtime 1x -v ./internal/e2e/
	$(GO) test -run '^$$' -bench EnqueueConfirm -benchtime 3000x ./internal/jobs/

# Idle CPU of the api, a worker and redis-server (this build; IDLE_BASELINE_BIN=<dir of
# an older build's api and worker> measures both, alternately), and how soon a queued task
# starts in an idle worker (docs/BENCHMARKS.md, "Idle").
.PHONY: bench-idle bench-soak
bench-idle: deps
	$(GO) test -run '^$$' -bench IdleCPU -benchtime 1x -v ./internal/e2e/
	$(GO) test -run '^$$' -bench QueuedToStarted -benchtime 500x ./internal/jobs/

# RSS and goroutines of the api and a worker under a steady mixed load (docs/BENCHMARKS.md, "Soak").
SOAK_DURATION ?= 10m
bench-soak: deps
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -run '^$$' -bench Soak -benchtime 1x -timeout 90m -v ./internal/e2e/


# Fan-out reads (routes 21, 27, 28: p50 and Prefect calls) and the poll's CPU
# per request, proxy vs Prefect direct, interleaved. Real Prefect: BENCH_PREFECT_URL,
# else one withprefect starts when the venv is installed; the fake always.
.PHONY: bench-reads
bench-reads:
	$(GO) test -run '^$$' -bench 'Poll/upstream=fast-fake/clients=1$$' -benchtime 4000x ./internal/bench/
	@if [ -z "$$BENCH_PREFECT_URL" ] && [ -f "$${PREFECT_VENV:-.venv/prefect-$(PREFECT_VERSION)}/.installed" ]; then \
	  $(GO) build -o bin/withprefect ./internal/testenv/cmd/withprefect && \
	  bin/withprefect -- $(GO) test -run '^$$' -bench 'Reads' -benchtime 100x ./internal/bench/; \
	else $(GO) test -run '^$$' -bench 'Reads' -benchtime 100x ./internal/bench/; fi


# Synchronous flow-run creation (route 31) through the proxy, adaptive write
# limit on and off, against Prefect direct, on a fresh Prefect on SQLite and
# one on PostgreSQL, 16 and 64 clients, interleaved (docs/BENCHMARKS.md, "Writes").
.PHONY: bench-writes
bench-writes: test-deps prefect-venv
	$(GO) test -run '^$$' -bench Writes -benchtime 1x -timeout 60m -v ./internal/e2e/

.PHONY: bench
bench: bench-idle bench-soak bench-reads bench-writes
	$(GO) test -run '^$$' -bench 'Poll/upstream=fast-fake' -benchtime 4000x ./internal/bench/
	$(GO) test -run '^$$' -bench 'History' -benchtime 10x ./internal/bench/
	@if [ -n "$$BENCH_PREFECT_URL" ]; then $(GO) test -run '^$$' -bench 'Poll/upstream=prefect' -benchtime 400x ./internal/bench/; fi
	@if [ -n "$$BENCH_API_BINARY" ]; then $(GO) test -run '^$$' -bench 'Poll/proxy=api-binary' -benchtime 4000x ./internal/bench/; fi
