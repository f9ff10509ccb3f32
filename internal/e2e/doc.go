// Package e2e holds end-to-end tests: the real api and worker binaries
// against a real Prefect server and a real redis-server, both started by
// internal/testenv. Run them with `make test` (one Prefect for all packages)
// or `go test ./internal/e2e/` (starts its own Prefect; -short skips them).
package e2e
