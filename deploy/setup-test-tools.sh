#!/usr/bin/env bash
# Installs the system tools deploy/tests need that no Python wheel carries: promtool (Debian's
# `prometheus` package), which checks and unit-tests the alert rules. Idempotent: does nothing
# when promtool is already on PATH; runs apt-get only when it is missing and only as root.
# (k6, hadolint and the Kubernetes schemas come from deploy/requirements.txt into .venv.)
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool not found: install Debian's 'prometheus' package (sudo apt-get install --no-install-recommends prometheus)" >&2
  echo "or put a promtool binary from a Prometheus release on PATH, then re-run the tests" >&2
  exit 1
fi

# The package's maintainer scripts would start a Prometheus server; only promtool is wanted.
# policy-rc.d exiting 101 tells invoke-rc.d not to start services during this install.
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  added_policy=1
fi
trap '[ -n "$added_policy" ] && rm -f "$policy"' EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null
promtool --version | head -n1
