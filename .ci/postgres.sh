#!/usr/bin/env bash
# Install PostgreSQL from Debian packages, start a server on 127.0.0.1, create a test user and
# database, and print ONE line on stdout:
#   export REASONGEN_TEST_PG_URL=postgresql+psycopg://USER:PASS@127.0.0.1:PORT/DB
# Everything else goes to stderr, so a caller can do:  eval "$(.ci/postgres.sh)"
# Idempotent: re-running reuses the installed packages, the cluster, the role and the database.
# Meant for CI and test machines (Debian 12, run as root, or as a user with sudo); the server is
# bound to loopback only and the default password is a test password (override with
# REASONGEN_PG_PASSWORD).
set -euo pipefail

PG_USER="${REASONGEN_PG_USER:-reasongen}"
PG_DB="${REASONGEN_PG_DB:-reasongen_test}"
PG_PASSWORD="${REASONGEN_PG_PASSWORD:-reasongen-test-only}"

log() { echo "[postgres.sh] $*" >&2; }

case "$PG_USER$PG_DB" in
  *[!A-Za-z0-9_]*) log "REASONGEN_PG_USER and REASONGEN_PG_DB must be letters, digits and _"; exit 2 ;;
esac
case "$PG_PASSWORD" in
  *[!A-Za-z0-9_.-]*) log "REASONGEN_PG_PASSWORD must be letters, digits, '_', '.' or '-'"; exit 2 ;;
esac

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  log "run as root (or install sudo): packages and the server need administrator rights"
  exit 1
fi
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres -- "$@"; fi
}

# 1. Packages (skipped when a server is already installed).
if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing postgresql from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq >&2
  "${SUDO[@]}" apt-get install -y -qq postgresql >&2
else
  log "postgresql already installed"
fi

# 2. A cluster (the package normally creates one; a policy-rc.d container may not have).
if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
  VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
  log "creating cluster $VERSION/main"
  "${SUDO[@]}" pg_createcluster "$VERSION" main >&2
fi
read -r VERSION CLUSTER PORT STATUS _ < <(pg_lsclusters -h | head -n 1)

# 3. Loopback only, then start (or keep running).
# A drop-in under conf.d (Debian's postgresql.conf includes that folder) leaves the packaged
# file untouched.
CONF_D="/etc/postgresql/$VERSION/$CLUSTER/conf.d"
WANT="listen_addresses = '127.0.0.1'"
CHANGED=0
if [ "$(cat "$CONF_D/reasongen.conf" 2>/dev/null)" != "$WANT" ]; then
  echo "$WANT" | "${SUDO[@]}" tee "$CONF_D/reasongen.conf" >/dev/null
  "${SUDO[@]}" chown postgres:postgres "$CONF_D/reasongen.conf"
  CHANGED=1
fi
if [ "$STATUS" = "online" ] && [ "$CHANGED" = 1 ]; then
  log "cluster $VERSION/$CLUSTER running on port $PORT; restarting to listen on 127.0.0.1 only"
  "${SUDO[@]}" pg_ctlcluster "$VERSION" "$CLUSTER" restart >&2
elif [ "$STATUS" = "online" ]; then
  log "cluster $VERSION/$CLUSTER already running on 127.0.0.1:$PORT"
else
  log "starting cluster $VERSION/$CLUSTER on 127.0.0.1:$PORT"
  "${SUDO[@]}" pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi
for _ in $(seq 1 60); do
  if pg_isready -q -h 127.0.0.1 -p "$PORT"; then break; fi
  sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$PORT" >&2

# 4. Role and database (create if missing, always reset the password).
as_postgres psql -q -p "$PORT" -v ON_ERROR_STOP=1 >&2 <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN;
  END IF;
END
\$\$;
ALTER ROLE $PG_USER WITH LOGIN PASSWORD '$PG_PASSWORD';
SQL
if [ "$(as_postgres psql -p "$PORT" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != "1" ]; then
  log "creating database $PG_DB owned by $PG_USER"
  as_postgres createdb -p "$PORT" -O "$PG_USER" "$PG_DB"
fi
as_postgres psql -q -p "$PORT" -v ON_ERROR_STOP=1 -d "$PG_DB" \
  -c "ALTER DATABASE $PG_DB OWNER TO $PG_USER; ALTER SCHEMA public OWNER TO $PG_USER;" >&2

# 5. Check that the user can log in over TCP with the password, then print the export line.
PGPASSWORD="$PG_PASSWORD" psql -q -h 127.0.0.1 -p "$PORT" -U "$PG_USER" -d "$PG_DB" -tAc "SELECT 1" >/dev/null
log "ready: $PG_USER@127.0.0.1:$PORT/$PG_DB"
echo "export REASONGEN_TEST_PG_URL=postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PORT/$PG_DB"
