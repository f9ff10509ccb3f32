#!/usr/bin/env bash
# Checks the deployment files: docker-compose.yml through a real Compose
# implementation (Debian's docker-compose, installed here when missing), the
# Dockerfile, and deploy/kubernetes through the Kubernetes API types. The Go
# tests live in their own module (deploy/) so the service's go.mod does not
# carry the Kubernetes API.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}

if ! command -v docker-compose >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "deploy-check: docker-compose is missing and there is no apt-get; install docker-compose" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "deploy-check: docker-compose is missing; run as root or install it" >&2; exit 1
    fi
  fi
  echo "deploy-check: installing docker-compose" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

# The compose file must resolve, with and without its profiles. .env.example
# stands in for the operator's .env.
export PROXY_ENV_FILE=.env.example
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile relay --profile prefect config -q
echo "deploy-check: docker-compose.yml resolves (docker-compose $(docker-compose version --short))"

out="$(gofmt -l deploy)"
if [ -n "$out" ]; then echo "gofmt: these files need formatting:"; echo "$out"; exit 1; fi
cd deploy
$GO mod tidy -diff || { echo "deploy-check: deploy/go.mod is not tidy (cd deploy && go mod tidy)" >&2; exit 1; }
$GO vet ./...
$GO test -race -count=1 ./...
