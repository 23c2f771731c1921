#!/bin/sh
# Container entrypoint: export each secret file the Secrets Store CSI driver mounted
# (one file per key, named like the variable: /mnt/secrets/DATABASE_URL) as an environment
# variable, then exec the command. Reading the files instead of a synced Kubernetes Secret
# means the first pod (the migrate hook) needs nothing but the mount.
set -eu
dir="${SECRETS_DIR:-/mnt/secrets}"
if [ -d "$dir" ]; then
  for file in "$dir"/*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    case "$name" in
      *[!A-Z0-9_]* | [0-9]*) continue ;;  # not a variable name (secret.json, ...)
    esac
    value=$(cat "$file")
    export "$name=$value"
  done
fi
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi
exec "$@"
