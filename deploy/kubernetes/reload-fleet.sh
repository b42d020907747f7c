#!/usr/bin/env bash
# Reloads the models on every running rradistill pod, one pod at a time: POST /admin/reload
# with the admin key (src/api/admin.rs; as SIGHUP does). Each pod loads and warms the changed
# models beside the old ones and swaps them in without dropping a request; if they fail to
# load it answers 409 and keeps serving the old ones. The script stops at the first pod that
# fails (the rest would most likely fail the same way) and exits 1 naming it.
#
#   deploy/kubernetes/reload-fleet.sh                 # kubectl's current namespace
#   NAMESPACE=search deploy/kubernetes/reload-fleet.sh
#
# When: the models a pod reads changed without a change to the pod template, e.g. model
# folders on a mounted volume replaced in place, or a ConfigMap edited live. An edit of
# models.toml applied with `kubectl apply -k` renames the generated ConfigMap and rolls the
# pods instead; no reload is needed then.
#
# Environment: ADMIN_API_KEY (default: read from the Secret), SECRET (rradistill-api-keys),
# NAMESPACE, SELECTOR (app.kubernetes.io/name=rradistill), POD_PORT (8080, the container's
# http port), RELOAD_TIMEOUT (seconds per pod, 300: loading and warming takes a while),
# KUBECTL (kubectl). Needs kubectl (port-forward to each pod: the image has no curl) and curl.
set -euo pipefail

SECRET=${SECRET:-rradistill-api-keys}
SELECTOR=${SELECTOR:-app.kubernetes.io/name=rradistill}
POD_PORT=${POD_PORT:-8080}
RELOAD_TIMEOUT=${RELOAD_TIMEOUT:-300}
KUBECTL=${KUBECTL:-kubectl}

namespace=()
if [ -n "${NAMESPACE:-}" ]; then namespace=(--namespace "$NAMESPACE"); fi
kc() {
  "$KUBECTL" ${namespace[@]+"${namespace[@]}"} "$@"
}

work=$(mktemp -d)
forward_pid=""
cleanup() {
  if [ -n "$forward_pid" ]; then kill "$forward_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

key=${ADMIN_API_KEY:-}
if [ -z "$key" ]; then
  key=$(kc get secret "$SECRET" -o 'jsonpath={.data.ADMIN_API_KEY}' | base64 -d) || key=""
fi
if [ -z "$key" ]; then
  echo "no admin key: set ADMIN_API_KEY or put ADMIN_API_KEY in the Secret $SECRET" >&2
  echo "(without one the pods have no admin endpoints; SIGHUP to each pod's PID 1 also reloads)" >&2
  exit 2
fi
# The key goes to curl in a header file, not on its command line (visible in ps).
umask 077
printf 'authorization: Bearer %s\n' "$key" >"$work/headers"

pods=$(kc get pods -l "$SELECTOR" --field-selector=status.phase=Running \
  -o 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}')
if [ -z "$pods" ]; then
  echo "no running pods match $SELECTOR${NAMESPACE:+ in $NAMESPACE}" >&2
  exit 2
fi

count=0
for pod in $pods; do
  # Not through kc: $! must be kubectl's own PID, so that the kill below ends it.
  "$KUBECTL" ${namespace[@]+"${namespace[@]}"} port-forward "pod/$pod" ":$POD_PORT" >"$work/forward.log" 2>&1 &
  forward_pid=$!
  local_port=""
  for _ in $(seq 1 100); do
    local_port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$work/forward.log" | head -n1)
    if [ -n "$local_port" ] || ! kill -0 "$forward_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [ -z "$local_port" ]; then
    echo "$pod: kubectl port-forward failed: $(cat "$work/forward.log")" >&2
    exit 1
  fi
  status=$(curl -sS -o "$work/body" -w '%{http_code}' --max-time "$RELOAD_TIMEOUT" -X POST \
    -H @"$work/headers" "http://127.0.0.1:$local_port/admin/reload") || status="000"
  kill "$forward_pid" 2>/dev/null || true
  wait "$forward_pid" 2>/dev/null || true
  forward_pid=""
  if [ "$status" != 200 ]; then
    echo "$pod: reload failed with HTTP $status: $(cat "$work/body" 2>/dev/null)" >&2
    echo "reloaded $count pod(s) before $pod; the others keep their current models" >&2
    exit 1
  fi
  echo "$pod: reloaded $(cat "$work/body")"
  count=$((count + 1))
done
echo "reloaded $count pod(s)"
