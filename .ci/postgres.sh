#!/usr/bin/env bash
# Throwaway PostgreSQL server for the test suite (CI and local use).
#
#   eval "$(bash .ci/postgres.sh start)"   # start; prints `export ...` lines on stdout
#   bash .ci/postgres.sh stop "$DIR"        # stop the server and delete DIR
#
# `start` installs Debian's `postgresql` package if no server binaries are found
# (needs root + apt-get), initdb's a fresh cluster in a new mktemp directory,
# listens only on 127.0.0.1 on a free port (unix socket inside that directory),
# creates role+database `gasnas` with a password, waits for pg_isready, and prints:
#   export GAS_NAS_TEST_POSTGRES=postgresql://gasnas:...@127.0.0.1:PORT/gasnas
#   export GAS_NAS_CI_PG_DIR=/tmp/gasnas-pg.XXXXXX
# All progress/diagnostics go to stderr; stdout carries only the export lines.
# It exits non-zero (after cleaning up what it started) if anything fails.
set -euo pipefail

PG_USER=gasnas
PG_DB=gasnas
PG_PASSWORD=${GAS_NAS_CI_PG_PASSWORD:-gasnas-ci-secret}

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
  local d
  # Debian/Ubuntu layout first (newest version wins), then whatever is on PATH.
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x $d/initdb && -x $d/pg_ctl ]]; then echo "$d"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"; return 0
  fi
  return 1
}

# Run a server command as the `postgres` OS user when we are root (initdb and
# postgres refuse to run as root); otherwise as ourselves. The cwd is the
# server's directory so the unprivileged user can always access it.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    (cd "$PG_DIR" && runuser -u postgres -- "$@")
  else
    (cd "$PG_DIR" && "$@")
  fi
}

free_port() {
  local py
  for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' && return 0
    fi
  done
  echo 55432
}

cmd_stop() {
  PG_DIR=${1:-${GAS_NAS_CI_PG_DIR:-}}
  [[ -n $PG_DIR && -d $PG_DIR ]] || { log "stop: no server directory given"; return 0; }
  local bindir
  if [[ -f $PG_DIR/data/postmaster.pid ]] && bindir=$(find_bindir); then
    as_pg "$bindir/pg_ctl" stop -D "$PG_DIR/data" -m immediate -s >&2 || log "pg_ctl stop failed"
  fi
  rm -rf -- "$PG_DIR"
}

cmd_start() {
  local bindir
  if ! bindir=$(find_bindir); then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
      log "no PostgreSQL server binaries found and cannot apt-get install them (not root or no apt)"
      return 1
    fi
    log "installing Debian package 'postgresql' ..."
    local t0=$SECONDS
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
    log "installed in $((SECONDS - t0))s"
    bindir=$(find_bindir) || { log "postgresql installed but no initdb/pg_ctl found"; return 1; }
  fi
  log "using $bindir ($("$bindir/postgres" --version))"

  if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    log "creating system user 'postgres'"
    useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin postgres
  fi

  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gasnas-pg.XXXXXX")
  # If anything below fails, stop whatever we started and remove the directory.
  trap 'rc=$?; if [[ $rc -ne 0 ]]; then
          [[ -f $PG_DIR/server.log ]] && { log "server log:"; tail -n 30 "$PG_DIR/server.log" >&2 || true; }
          cmd_stop "$PG_DIR"; fi' EXIT
  chmod 700 "$PG_DIR"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$PG_DIR"; fi

  local port
  port=${GAS_NAS_CI_PG_PORT:-$(free_port)}

  printf '%s\n' "$PG_PASSWORD" >"$PG_DIR/pwfile"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$PG_DIR/pwfile"; fi
  chmod 600 "$PG_DIR/pwfile"
  as_pg "$bindir/initdb" -D "$PG_DIR/data" -U "$PG_USER" --pwfile="$PG_DIR/pwfile" \
    --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  rm -f "$PG_DIR/pwfile"

  # Throwaway server: only loopback TCP, socket in our dir, durability off.
  cat >>"$PG_DIR/data/postgresql.conf" <<EOF

# --- gas-nas CI ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF

  log "starting server on 127.0.0.1:$port (dir $PG_DIR)"
  as_pg "$bindir/pg_ctl" start -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 -s >&2

  local i
  for ((i = 0; i < 60; i++)); do
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U "$PG_USER" && break
    sleep 0.5
  done
  "$bindir/pg_isready" -h 127.0.0.1 -p "$port" -d postgres -U "$PG_USER" >&2

  PGPASSWORD=$PG_PASSWORD "$bindir/createdb" -h 127.0.0.1 -p "$port" -U "$PG_USER" "$PG_DB"
  PGPASSWORD=$PG_PASSWORD "$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U "$PG_USER" -d "$PG_DB" \
    -v ON_ERROR_STOP=1 -c 'select 1' >/dev/null

  echo "export GAS_NAS_TEST_POSTGRES=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/$PG_DB"
  echo "export GAS_NAS_CI_PG_DIR=$PG_DIR"
  log "ready"
}

case ${1:-start} in
  start) cmd_start ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 [start|stop DIR]" >&2; exit 2 ;;
esac
