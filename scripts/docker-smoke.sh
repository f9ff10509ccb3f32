#!/usr/bin/env bash
# Builds the images from Docker/Dockerfile and runs the compose stack on a real
# Docker engine: redis, the api and three workers (--scale worker=3) must all
# become healthy through their own HEALTHCHECKs, the api must answer on
# 127.0.0.1 only, the images must run as uid 65532 and carry the version, and
# the one-shot relay-setup must run with the env file. Everything it starts is
# removed at the end.
#
#   make docker-smoke                     # needs a Docker engine (docker info) and docker-compose
#   SMOKE_BASES=host make docker-smoke    # no registry: stand-in base images made from this machine
#
# SMOKE_BASES=host replaces the two pinned bases and redis with images built
# from the host: its Go toolchain (same version as go.mod) plus busybox for the
# build stage, a distroless-like root (passwd with nonroot 65532, CA
# certificates, /home/nonroot, /tmp) for the runtime, and the host's
# redis-server. The Dockerfile itself is unchanged (its bases are build args).
# The stand-ins (ppsmoke/{go,distroless,redis}:host) are kept for the next run;
# SMOKE_REBUILD_BASES=1 remakes them (after a Go upgrade, say).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

for c in docker docker-compose curl; do
  command -v "$c" >/dev/null 2>&1 || { echo "docker-smoke: $c is not installed" >&2; exit 1; }
done
if ! docker info >/dev/null 2>&1; then
  echo "docker-smoke: no Docker engine answers (start dockerd, or set DOCKER_HOST)" >&2
  exit 1
fi

work="$(mktemp -d)"
project="ppsmoke$$"
compose=(docker-compose -p "$project" -f docker-compose.yml -f "$work/override.yml")
# Its own image names, so a smoke run never replaces the images of a real stack.
api_image="ppsmoke/api:$project" worker_image="ppsmoke/worker:$project"
cleanup() {
  if [ "${KEEP:-}" != 1 ]; then
    PROXY_ENV_FILE="$work/smoke.env" "${compose[@]}" --profile relay down -v --remove-orphans >/dev/null 2>&1 || true
    docker image rm -f "$api_image" "$worker_image" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "docker-smoke: FAIL: $*" >&2; exit 1; }

# --- base images ---
: > "$work/override.yml"
if [ "${SMOKE_BASES:-pinned}" = host ] && { [ "${SMOKE_REBUILD_BASES:-}" = 1 ] ||
    ! docker image inspect ppsmoke/go:host ppsmoke/distroless:host ppsmoke/redis:host >/dev/null 2>&1; }; then
  echo "docker-smoke: building stand-in base images from this host" >&2
  goroot="$(go env GOROOT)"
  busybox="$(command -v busybox || true)"
  [ -n "$busybox" ] && ldd "$busybox" 2>&1 | grep -q 'not a dynamic' ||
    fail "SMOKE_BASES=host needs a static busybox (apt-get install busybox-static)"
  certs=/etc/ssl/certs/ca-certificates.crt

  # Go build stage: GOROOT, a shell, certificates.
  r="$work/go-root"; mkdir -p "$r/bin" "$r/usr/local" "$r/etc/ssl/certs" "$r/tmp" "$r/root"
  cp "$busybox" "$r/bin/busybox"
  for a in sh ls cat mkdir rm cp mv env; do ln -s busybox "$r/bin/$a"; done
  cp "$certs" "$r/etc/ssl/certs/"
  tar -C "$(dirname "$goroot")" --exclude="$(basename "$goroot")/test" --exclude="$(basename "$goroot")/doc" \
    -cf - "$(basename "$goroot")" | tar -C "$r/usr/local" -xf -
  [ "$(basename "$goroot")" = go ] || mv "$r/usr/local/$(basename "$goroot")" "$r/usr/local/go"
  chmod 1777 "$r/tmp"
  tar -C "$r" -cf - . | docker import \
    --change 'ENV PATH=/usr/local/go/bin:/bin' --change 'ENV HOME=/root' \
    --change 'ENV GOTOOLCHAIN=local' --change 'ENV GOPATH=/go' - ppsmoke/go:host >/dev/null

  # Runtime: what distroless static:nonroot provides.
  r="$work/rt-root"; mkdir -p "$r/etc/ssl/certs" "$r/tmp" "$r/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$r/etc/group"
  cp "$certs" "$r/etc/ssl/certs/"
  chmod 1777 "$r/tmp"
  # Owned by root but /home/nonroot by 65532, without needing to chown here.
  python3 - "$r" "$work/rt.tar" <<'PY'
import sys, tarfile
def own(ti):
    nonroot = ti.name.startswith("./home/nonroot")
    ti.uid = ti.gid = 65532 if nonroot else 0
    ti.uname = ti.gname = "nonroot" if nonroot else "root"
    return ti
with tarfile.open(sys.argv[2], "w") as t:
    t.add(sys.argv[1], arcname=".", filter=own)
PY
  docker import - ppsmoke/distroless:host < "$work/rt.tar" >/dev/null

  # Redis: the host's redis-server and redis-cli with their libraries.
  r="$work/redis-root"; mkdir -p "$r/usr/bin" "$r/data" "$r/tmp"
  cp "$(command -v redis-server)" "$(command -v redis-cli)" "$r/usr/bin/"
  for lib in $(ldd "$(command -v redis-server)" "$(command -v redis-cli)" | awk '/=>/ {print $3} /^\t\/lib/ {print $1}' | sort -u); do
    mkdir -p "$r$(dirname "$lib")"; cp -L "$lib" "$r$lib"
  done
  chmod 1777 "$r/tmp" "$r/data"
  tar -C "$r" -cf - . | docker import --change 'ENV PATH=/usr/bin' --change 'WORKDIR /data' - ppsmoke/redis:host >/dev/null
fi
if [ "${SMOKE_BASES:-pinned}" = host ]; then

  cat > "$work/override.yml" <<EOF
services:
  redis:
    image: ppsmoke/redis:host
    # What the official image's entrypoint adds when it gets no config file.
    command: ["redis-server", "--appendonly", "yes", "--protected-mode", "no"]
  relay-setup:
    image: $api_image
    build:
      network: host
      args:
        GO_IMAGE: ppsmoke/go:host
        RUNTIME_IMAGE: ppsmoke/distroless:host
  api:
    image: $api_image
    build:
      network: host
      args:
        GO_IMAGE: ppsmoke/go:host
        RUNTIME_IMAGE: ppsmoke/distroless:host
  worker:
    image: $worker_image
    build:
      network: host
      args:
        GO_IMAGE: ppsmoke/go:host
        RUNTIME_IMAGE: ppsmoke/distroless:host
EOF
else
  cat > "$work/override.yml" <<EOF
services:
  relay-setup: {image: $api_image}
  api: {image: $api_image}
  worker: {image: $worker_image}
EOF
fi

# --- settings: .env.example with a key and a free port ---
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
sed "s|^JOB_ENCRYPTION_KEY=.*|JOB_ENCRYPTION_KEY=$(openssl rand -base64 32)|" .env.example > "$work/smoke.env"
export PROXY_ENV_FILE="$work/smoke.env" PROXY_PORT="$port"
export VERSION="smoke-$$" COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)"

echo "docker-smoke: building the api and worker images" >&2
"${compose[@]}" build >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; fail "docker-compose build"; }

for pair in "$api_image=api" "$worker_image=worker"; do
  img="${pair%%=*}" bin="${pair##*=}"
  [ "$(docker image inspect -f '{{.Config.User}}' "$img")" = 65532:65532 ] || fail "$img does not run as 65532:65532"
  hc="$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$img")"
  [ "$hc" = "[\"CMD\",\"/usr/local/bin/$bin\",\"healthcheck\"]" ] || fail "$img HEALTHCHECK is $hc"
  [ "$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$img")" = "$VERSION" ] ||
    fail "$img is not labelled with version $VERSION"
  out="$(docker run --rm "$img" "/usr/local/bin/$bin" --version 2>&1 || true)"
  case "$out" in *"$VERSION"*) ;; *) fail "$bin --version in $img printed: $out" ;; esac
done

echo "docker-smoke: starting redis, the api and 3 workers" >&2
"${compose[@]}" up -d --scale worker=3 >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "docker-compose up"; }

ids="$("${compose[@]}" ps -q)"
[ "$(echo "$ids" | wc -l)" -eq 5 ] || fail "want 5 containers (redis, api, 3 workers), have: $("${compose[@]}" ps)"
deadline=$((SECONDS + ${SMOKE_TIMEOUT:-180}))
while :; do
  unhealthy=""
  for id in $ids; do
    s="$(docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' "$id")"
    case "$s" in *" healthy") ;; *) unhealthy="$unhealthy $s;" ;; esac
  done
  [ -z "$unhealthy" ] && break
  if [ $SECONDS -ge $deadline ]; then
    "${compose[@]}" logs --tail 30 >&2 || true
    fail "not healthy:$unhealthy"
  fi
  sleep 2
done
echo "docker-smoke: all 5 containers healthy" >&2

code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/livez")"
[ "$code" = 200 ] || fail "GET 127.0.0.1:$port/livez answered $code"
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")"
[ "$code" = 200 ] || fail "GET 127.0.0.1:$port/readyz answered $code"
bound="$("${compose[@]}" port api 8085)"
[ "$bound" = "127.0.0.1:$port" ] || fail "api is published on $bound, want 127.0.0.1:$port"

# The one-shot set-up runs relay-setup with the env file: without
# RELAY_PUBLIC_URL it must stop and say so.
out="$("${compose[@]}" --profile relay run --rm relay-setup 2>&1 || true)"
case "$out" in *RELAY_PUBLIC_URL*) ;; *) fail "relay-setup without RELAY_PUBLIC_URL printed: $out" ;; esac

echo "docker-smoke: ok (images built, 5 containers healthy, api on 127.0.0.1:$port, relay-setup ran)"
