#!/usr/bin/env bash
# Run the web server, one Celery worker and Celery beat in the foreground; Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv/bin
trap 'kill 0' EXIT INT TERM
$VENV/gunicorn config.wsgi --bind "${BIND:-127.0.0.1:8000}" --workers "${WEB_WORKERS:-2}" --access-logfile - &
$VENV/celery -A config worker --loglevel INFO --concurrency "${WORKER_CONCURRENCY:-2}" &
$VENV/celery -A config beat --loglevel INFO --schedule var/celerybeat-schedule &
wait -n
