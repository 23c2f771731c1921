#!/usr/bin/env bash
# supervise.sh NAME COMMAND...: run COMMAND, and run it again whenever it exits (after a
# back-off that doubles up to 30 s while it keeps dying within 10 s of starting). SIGTERM or
# SIGINT stop the command (forwarding the signal, so Celery and gunicorn shut down warm)
# and then the supervisor.
set -uo pipefail
name=$1
shift
child=0
stopping=0
stop() {
  stopping=1
  if [ "$child" != 0 ]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  exit 0
}
trap stop TERM INT
delay=1
while [ "$stopping" = 0 ]; do
  started=$(date +%s)
  "$@" &
  child=$!
  wait "$child"
  code=$?
  child=0
  if [ $(( $(date +%s) - started )) -ge 10 ]; then delay=1; fi
  echo "supervise: $name exited with status $code; restarting in ${delay}s" >&2
  sleep "$delay" &
  wait $!
  delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
done
