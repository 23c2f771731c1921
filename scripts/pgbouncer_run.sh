#!/usr/bin/env bash
# Run a command with a private PgBouncer in transaction pooling mode in front of the
# PostgreSQL at PG_HOST:PG_PORT (default 127.0.0.1:5432), listening on PGBOUNCER_PORT
# (default 6433); stopped when the command ends. Installs Debian's pgbouncer when missing.
#
#   scripts/pgbouncer_run.sh pytest tests/ledger/test_concurrency.py
set -euo pipefail
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PORT=${PGBOUNCER_PORT:-6433}
if ! command -v pgbouncer >/dev/null 2>&1 && ! test -x /usr/sbin/pgbouncer; then
  echo "installing pgbouncer (apt)"
  (apt-get install -y -q pgbouncer >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q pgbouncer >/dev/null; })
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
dir=$(mktemp -d /tmp/pgbouncer.XXXXXX)
chmod 755 "$dir"
cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=$PG_HOST port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir = $dir
pidfile = $dir/pgbouncer.pid
logfile = $dir/pgbouncer.log
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 40
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
INI
printf '"postgres" ""\n' > "$dir/userlist.txt"
user_flag=()
if [ "$(id -u)" = 0 ]; then
  chown -R postgres "$dir"
  user_flag=(-u postgres)  # pgbouncer refuses to run as root
fi
"$PGBOUNCER" -d "${user_flag[@]}" "$dir/pgbouncer.ini"
cleanup() {
  if [ -f "$dir/pgbouncer.pid" ]; then kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true; fi
  sleep 0.5
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 50); do
  pg_isready -h 127.0.0.1 -p "$PORT" -q 2>/dev/null && break
  sleep 0.1
done
echo "pgbouncer (transaction pooling) on 127.0.0.1:$PORT -> $PG_HOST:$PG_PORT" >&2
"$@"
