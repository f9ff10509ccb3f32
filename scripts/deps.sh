#!/usr/bin/env bash
# Install the system packages tests and `make run` need, when missing:
# redis-server (real Redis for end-to-end tests; its --sentinel mode runs the
# Sentinels of the failover test), haproxy (the load balancer of the
# many-replicas test), python3 with venv (for the Prefect server's
# virtualenv); with --test also chromium (a test renders /docs in it with the
# network cut off) and postgresql (the harness runs Prefect on a private
# PostgreSQL cluster: PREFECT_DB=postgres, its own test and bench-writes).
# Debian/Ubuntu, as root or with sudo.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# Debian installs haproxy in /usr/sbin, which a non-root PATH may lack.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if ! command -v python3 >/dev/null 2>&1; then
  need+=(python3 python3-venv python3-pip)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv python3-pip)
fi
command -v git >/dev/null 2>&1 || need+=(git)
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # Debian keeps initdb off PATH, in /usr/lib/postgresql/<major>/bin.
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
fi

if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go is not installed (need Go 1.26: https://go.dev/dl/)" >&2
  exit 1
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "deps: missing ${need[*]}; run as root or install them" >&2; exit 1
  fi
fi
echo "deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
