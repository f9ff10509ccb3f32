#!/usr/bin/env bash
# `make run`: everything on one machine.
#  - uses the Prefect server at PREFECT_API_URL (default http://127.0.0.1:4200/api)
#    if one answers; otherwise installs Prefect into .venv once and starts one in
#    the background (data in .run/prefect, log in .run/prefect.log);
#  - builds and starts the api on LISTEN_ADDR (default :8085) with an embedded
#    Redis and an in-process worker (REDIS_URL unset), in the foreground.
# Ctrl-C stops the api and the Prefect server this script started.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PREFECT_VERSION="${PREFECT_VERSION:-3.6.29}"
export PREFECT_API_URL="${PREFECT_API_URL:-http://127.0.0.1:4200/api}"
export LISTEN_ADDR="${LISTEN_ADDR:-:8085}"
run_dir="$root/.run"
mkdir -p "$run_dir"

healthy() {
  python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1].rstrip("/") + "/health", timeout=2) as r:
        sys.exit(0 if r.read().strip() == b"true" else 1)
except Exception:
    sys.exit(1)
PY
}

prefect_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$prefect_pid" ] && kill -0 "$prefect_pid" 2>/dev/null; then
    echo "run: stopping the Prefect server (pid $prefect_pid)" >&2
    kill -TERM -- "-$prefect_pid" 2>/dev/null || kill -TERM "$prefect_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$prefect_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$prefect_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT INT TERM

if healthy "$PREFECT_API_URL"; then
  echo "run: using the Prefect server already answering at $PREFECT_API_URL" >&2
else
  hostport="$(python3 -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 4200)' "$PREFECT_API_URL")"
  host="${hostport% *}"; port="${hostport#* }"
  case "$host" in
    127.0.0.1|localhost|::1) ;;
    *) echo "run: no Prefect answers at $PREFECT_API_URL and it is not local; start it or unset PREFECT_API_URL" >&2; exit 1 ;;
  esac
  bash "$root/scripts/prefect-venv.sh"
  export PREFECT_HOME="$run_dir/prefect"
  mkdir -p "$PREFECT_HOME"
  echo "run: starting Prefect $PREFECT_VERSION on $host:$port (log: .run/prefect.log, data: .run/prefect)" >&2
  # setsid: its own process group, so Ctrl-C reaches the api first and the
  # server is then stopped cleanly by cleanup(). The tests start Prefect with
  # this same script (TestPrefectAsMakeRunStartsIt).
  setsid bash "$root/scripts/prefect-server.sh" "$host" "$port" >"$run_dir/prefect.log" 2>&1 &
  prefect_pid=$!
  for i in $(seq 1 240); do
    if healthy "$PREFECT_API_URL"; then break; fi
    if ! kill -0 "$prefect_pid" 2>/dev/null; then
      echo "run: the Prefect server exited; last lines of .run/prefect.log:" >&2
      tail -n 30 "$run_dir/prefect.log" >&2
      exit 1
    fi
    if [ "$i" = 240 ]; then echo "run: Prefect not healthy after 120 s (see .run/prefect.log)" >&2; exit 1; fi
    sleep 0.5
  done
fi

go build -o "$root/bin/" ./cmd/api ./cmd/worker
port="${LISTEN_ADDR##*:}"
cat >&2 <<MSG

  prefect-proxy (Go) is starting
    api:          http://localhost:$port   (try: curl localhost:$port/proxy/prefect/version)
    health:       http://localhost:$port/readyz
    Prefect API:  $PREFECT_API_URL
    Prefect UI:   ${PREFECT_API_URL%/api}
    Redis:        embedded, in memory (not durable); jobs run in-process
  Point Django at it with PREFECT_PROXY_API_URL=http://localhost:$port
  Ctrl-C stops everything this command started.

MSG
# Not exec: the trap must run after the api exits to stop Prefect.
"$root/bin/api"
