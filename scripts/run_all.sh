#!/usr/bin/env bash
# Run the web server, one Celery worker and Celery beat in the foreground, each under
# scripts/supervise.sh: a process that dies (a worker after a broker outage, say) is started
# again instead of taking the others down with it. Ctrl-C (or SIGTERM) stops all three warmly.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=.venv/bin
pids=()
# Prometheus multiprocess mode, one directory per process tree (each empties its own at
# start): the web's /metrics sums its gunicorn workers, the worker serves what its children
# counted on WORKER_METRICS_BIND (ops/metrics.py).
scripts/supervise.sh web env BIND="${BIND:-127.0.0.1:8000}" WEB_WORKERS="${WEB_WORKERS:-2}" \
  WEB_TMP_DIR="${TMPDIR:-/tmp}" PROMETHEUS_MULTIPROC_DIR=var/prometheus/web \
  $VENV/gunicorn config.wsgi -c python:ops.gunicorn_conf &
pids+=($!)
scripts/supervise.sh worker env PROMETHEUS_MULTIPROC_DIR=var/prometheus/worker \
  WORKER_METRICS_BIND="${WORKER_METRICS_BIND:-127.0.0.1:9808}" \
  $VENV/celery -A config worker --loglevel INFO --concurrency "${WORKER_CONCURRENCY:-2}" &
pids+=($!)
scripts/supervise.sh beat $VENV/celery -A config beat --loglevel INFO \
  --schedule var/celerybeat-schedule &
pids+=($!)
stop() {
  trap - INT TERM
  kill -TERM "${pids[@]}" 2>/dev/null
  wait
  exit 0
}
trap stop INT TERM
wait
