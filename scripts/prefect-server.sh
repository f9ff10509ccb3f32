#!/usr/bin/env bash
# Run a Prefect server in the foreground the way `make run` does:
#   scripts/prefect-server.sh HOST PORT
# PREFECT_VERSION (default 3.6.29) selects the venv made by prefect-venv.sh
# (PREFECT_VENV overrides its path); PREFECT_HOME holds its data and must
# exist. Every Prefect service runs (the scheduler included) and the UI is
# served; only analytics are off. scripts/run-local.sh starts it, and
# internal/e2e's TestPrefectAsMakeRunStartsIt checks this exact command on every
# supported Prefect: cron deployments get their runs and the log has no
# traceback.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: PREFECT_HOME=DIR scripts/prefect-server.sh HOST PORT" >&2
  exit 2
fi
host="$1"; port="$2"
version="${PREFECT_VERSION:-3.6.29}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PREFECT_VENV:-$root/.venv/prefect-$version}"
: "${PREFECT_HOME:?must name the data directory of the server}"

export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_API_HOST="$host" PREFECT_SERVER_API_PORT="$port"
# Prefect also reads ./.env and ./prefect.toml: start where only its data is.
cd "$PREFECT_HOME"
exec "$venv/bin/prefect" server start --host "$host" --port "$port" --analytics-off
