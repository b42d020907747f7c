#!/bin/bash
# Docker HEALTHCHECK: exit 0 when GET /ready answers 200 (models loaded and warm, not
# draining), 1 otherwise. The runtime image has no curl, so this speaks HTTP/1.0 over bash's
# /dev/tcp. Port from PORT (default 8080); HEALTHCHECK_HOST overrides the address.
set -u
host="${HEALTHCHECK_HOST:-127.0.0.1}"
port="${PORT:-8080}"
if ! { exec 3<>"/dev/tcp/${host}/${port}"; } 2>/dev/null; then
  echo "nothing listening on ${host}:${port}" >&2
  exit 1
fi
printf 'GET /ready HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
if ! read -r -t 2 _ status _ <&3; then
  echo "no answer from ${host}:${port}/ready" >&2
  exit 1
fi
if [ "$status" != 200 ]; then
  echo "/ready answered ${status}" >&2
  exit 1
fi
