# shellcheck shell=bash
#
# Sourced by scripts/test. Makes sure the services the test suite talks to are
# reachable, starting them (and, as root, installing them from Debian's
# packages) when they are not, then exports:
#
#   PHOENIX_TEST_NATS_URL      a NATS server with JetStream
#   PHOENIX_TEST_DATABASE_URL  a PostgreSQL login role with CREATEDB; tests
#                              CREATE/DROP their own `phoenix_test_*` databases
#
# and, from ensure_schemathesis (called on its own, not by ensure_services):
#
#   PHOENIX_TEST_SCHEMATHESIS  the `schemathesis` CLI, pinned, in a venv under target/
#
# Either variable, when already set, is used as given and nothing is started.
#
# Everything here writes its progress to stderr, so stdout stays clean for
# `scripts/test --services-only`, which prints `export ...` lines.

# Debian installs nats-server, runuser and start-stop-daemon in sbin folders,
# which a non-root PATH may lack; rustup's cargo lives in ~/.cargo/bin, which a
# non-login shell (CI) may lack.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
if [ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]; then
  PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
export PATH

# The ports can be moved (PHOENIX_TEST_NATS_PORT, PHOENIX_TEST_PG_PORT) to try
# this script beside services that already run on the standard ones.
PHX_NATS_HOST=127.0.0.1
PHX_NATS_PORT=${PHOENIX_TEST_NATS_PORT:-4222}
PHX_PG_HOST=127.0.0.1
PHX_PG_PORT=${PHOENIX_TEST_PG_PORT:-5432}
PHX_PG_ROLE=phoenix
PHX_PG_PASSWORD=phoenix
# How long to wait for a server we started to accept connections.
PHX_WAIT_SECS=${PHOENIX_TEST_SERVICE_WAIT_SECS:-60}
PHX_APT_UPDATED=0
# How to reach PostgreSQL as a superuser: socket | tcp | none (see pg_find_admin).
PHX_PG_ADMIN=

step() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Hide the password in a URL before printing it.
redact_url() { printf '%s' "$1" | sed -E 's#(://[^:/@]*:)[^@/]*@#\1***@#'; }

# port_open HOST PORT: true if something accepts TCP connections there.
port_open() {
  # shellcheck disable=SC2016 # $1/$2 expand in the inner bash, on purpose
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# show_log FILE: print the end of a server's log, to explain a failure.
show_log() {
  if [ -n "${1:-}" ] && [ -r "$1" ]; then
    printf -- '--- last lines of %s ---\n' "$1" >&2
    tail -n 25 "$1" >&2 || true
  fi
}

# wait_port HOST PORT WHAT [LOGFILE [PID]]: wait (bounded) until HOST:PORT
# answers; with PID, stop waiting as soon as that process has died.
wait_port() {
  local host=$1 port=$2 what=$3 log=${4:-} pid=${5:-}
  local deadline=$((SECONDS + PHX_WAIT_SECS))
  until port_open "$host" "$port"; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      show_log "$log"
      die "$what exited before accepting connections on $host:$port${log:+ (log: $log)}"
    fi
    if ((SECONDS >= deadline)); then
      show_log "$log"
      die "$what did not accept connections on $host:$port within ${PHX_WAIT_SECS}s${log:+ (log: $log)}"
    fi
    sleep 0.5
  done
}

# apt_install PACKAGE...: install Debian packages (root only). Output goes to a
# log file: package scripts may start daemons, which must not inherit our
# stdout (a CI runner reading it would wait for them).
apt_install() {
  is_root || die "need root to install $*; install it by hand, or point the PHOENIX_TEST_* variables at running services"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
  local log
  log=$(mktemp "${TMPDIR:-/tmp}/phoenix-apt.XXXXXX")
  export DEBIAN_FRONTEND=noninteractive
  if [ "$PHX_APT_UPDATED" = 0 ]; then
    step "apt-get update"
    # A failed update is not fatal: the lists already on the machine may do.
    if ! apt-get -o DPkg::Lock::Timeout=300 update </dev/null >"$log" 2>&1; then
      tail -n 5 "$log" >&2
      warn "apt-get update failed; trying to install from the package lists already present"
    fi
    PHX_APT_UPDATED=1
  fi
  step "apt-get install $*"
  if ! apt-get -o DPkg::Lock::Timeout=300 install -y "$@" </dev/null >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "apt-get install $* failed (log: $log)"
  fi
  rm -f "$log"
}

# --- build prerequisites ---------------------------------------------------

# Vendored OpenSSL and the bundled libpq and SQLite are compiled from C: they
# need a C compiler with libc headers, make, perl (with the modules OpenSSL's
# Configure uses, which Debian's perl-base lacks) and pkg-config.
ensure_build_tools() {
  local missing=()
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  [ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
  command -v make >/dev/null 2>&1 || missing+=(make)
  perl -MIPC::Cmd -MFindBin -MFile::Compare -e 1 >/dev/null 2>&1 || missing+=(perl)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if is_root; then
    apt_install "${missing[@]}"
  else
    warn "missing build prerequisites: ${missing[*]} (not root, so not installing them); the build may fail"
  fi
}

# --- the browser for the dashboard tests ----------------------------------

# The dashboard's end-to-end tests drive Debian's headless Chromium through
# ChromeDriver (/usr/bin/chromium, /usr/bin/chromedriver).
ensure_browser() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return 0
  fi
  is_root || die "the dashboard tests need Chromium: apt-get install chromium chromium-driver"
  apt_install chromium chromium-driver
}

# --- promtool (Prometheus's exposition-format linter) --------------------------

# tests/api/exposition.rs checks the server's and a pipeline's Prometheus output
# with `promtool check metrics`, from Debian's prometheus package.
ensure_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    return 0
  fi
  is_root || die "the exposition tests need promtool: apt-get install prometheus"
  apt_install prometheus
  # The package may start a Prometheus of its own where systemd runs; the tests need none.
  if command -v systemctl >/dev/null 2>&1; then
    systemctl stop prometheus >/dev/null 2>&1 || true
  fi
}

# --- schemathesis (API fuzzing) ----------------------------------------------

# The version is pinned: its CLI flags, checks and report formats change
# between releases, and the API fuzz test builds its command line for this one.
PHX_SCHEMATHESIS_VERSION=4.32.5

# Install schemathesis into its own venv, $ROOT/target/tools/schemathesis (so
# `cargo clean` removes it and nothing lands in the work tree), unless the
# pinned version is already there; export PHOENIX_TEST_SCHEMATHESIS.
ensure_schemathesis() {
  local root=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
  local venv="$root/target/tools/schemathesis" want=$PHX_SCHEMATHESIS_VERSION have log
  local py="$venv/bin/python" bin="$venv/bin/schemathesis"
  have=$("$py" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)
  if [ "$have" != "$want" ] || [ ! -x "$bin" ]; then
    command -v python3 >/dev/null 2>&1 || {
      is_root || die "schemathesis needs python3 (3.9 or later): apt-get install python3 python3-venv"
      apt_install python3 python3-venv
    }
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
      die "schemathesis $want needs Python 3.9 or later; python3 is $(python3 --version 2>&1)"
    step "schemathesis: installing $want into $venv"
    log=$(mktemp "${TMPDIR:-/tmp}/phoenix-schemathesis.XXXXXX")
    # A venv whose Python is gone or that lacks pip is made anew.
    if [ -n "$have" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
      fresh_venv "$venv" "$log"
    fi
    if ! "$py" -m pip install -q --disable-pip-version-check "schemathesis==$want" </dev/null >"$log" 2>&1; then
      tail -n 25 "$log" >&2
      die "pip install schemathesis==$want into $venv failed (log: $log)"
    fi
    rm -f "$log"
    "$bin" --version >/dev/null 2>&1 || die "$bin does not run after installing schemathesis $want"
  fi
  install_hypothesis_shim "$py" "$root"
  export PHOENIX_TEST_SCHEMATHESIS="$bin"
  note "schemathesis $want ready at $PHOENIX_TEST_SCHEMATHESIS"
}

# fresh_venv VENV LOG: (re)creates a Python venv at VENV, installing Debian's
# python3-venv when python3 has no venv module (LOG gets the failure).
fresh_venv() {
  local venv=$1 log=$2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")" || die "cannot create $(dirname "$venv")"
  if ! python3 -m venv "$venv" >"$log" 2>&1; then
    # Debian's python3 has venv without ensurepip until python3-venv is in.
    rm -rf "$venv"
    if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
      cat "$log" >&2
      die "python3 -m venv $venv failed (on Debian: apt-get install python3-venv)"
    fi
    apt_install python3-venv
    if ! python3 -m venv "$venv" >"$log" 2>&1; then
      cat "$log" >&2
      rm -rf "$venv"
      die "python3 -m venv $venv failed even with python3-venv installed (log: $log)"
    fi
  fi
}

# The OpenTelemetry Python SDK and its OTLP exporters, and prometheus-client:
# third-party senders and scrape targets for the real-telemetry tests. Pinned.
PHX_OTEL_PYTHON_PACKAGES="opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2 opentelemetry-exporter-otlp-proto-grpc==1.45.2 prometheus-client==0.21.1"

# Install them into $ROOT/target/tools/otel-python (reinstalled when the pins
# change); exports PHOENIX_TEST_OTEL_PYTHON, that venv's python.
ensure_otel_python() {
  local root=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
  local venv="$root/target/tools/otel-python" log
  local py="$venv/bin/python" stamp="$venv/phoenix-pins"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$PHX_OTEL_PYTHON_PACKAGES" ] || [ ! -x "$py" ]; then
    command -v python3 >/dev/null 2>&1 || {
      is_root || die "the OpenTelemetry SDK tests need python3: apt-get install python3 python3-venv"
      apt_install python3 python3-venv
    }
    step "OpenTelemetry Python SDK: installing into $venv"
    log=$(mktemp "${TMPDIR:-/tmp}/phoenix-otel-python.XXXXXX")
    fresh_venv "$venv" "$log"
    # shellcheck disable=SC2086 # the package list splits into its pins, on purpose
    if ! "$py" -m pip install -q --disable-pip-version-check $PHX_OTEL_PYTHON_PACKAGES </dev/null >"$log" 2>&1; then
      tail -n 25 "$log" >&2
      die "pip install of the OpenTelemetry SDK into $venv failed (log: $log)"
    fi
    rm -f "$log"
    printf '%s' "$PHX_OTEL_PYTHON_PACKAGES" >"$stamp"
  fi
  export PHOENIX_TEST_OTEL_PYTHON="$py"
  note "OpenTelemetry Python SDK ready at $PHOENIX_TEST_OTEL_PYTHON"
}

# install_hypothesis_shim PYTHON ROOT: loads scripts/lib/hypothesis_py311_shim.py
# at the start of every interpreter of the venv (a .pth file), so a CPython 3.11
# parser bug in Hypothesis's lambda descriptions cannot abort a fuzzing run.
install_hypothesis_shim() {
  local py=$1 root=$2 site
  site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') ||
    die "cannot find the site-packages of $py"
  cp "$root/scripts/lib/hypothesis_py311_shim.py" "$site/hypothesis_py311_shim.py" ||
    die "cannot install the hypothesis shim into $site"
  printf 'import hypothesis_py311_shim\n' >"$site/phoenix_shims.pth"
}

# --- NATS ------------------------------------------------------------------

# nats_info HOST PORT: print the INFO line a NATS server greets clients with.
nats_info() {
  # shellcheck disable=SC2016 # $1/$2/$line expand in the inner bash, on purpose
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r line <&3 && printf "%s\n" "$line"' \
    _ "$1" "$2" 2>/dev/null
}

start_nats() {
  local bin=$1 store log pidfile out sfx=
  # On the standard port, root uses the same store and log as Debian machines
  # that start NATS before the session; a moved port gets its own.
  [ "$PHX_NATS_PORT" = 4222 ] || sfx="-$PHX_NATS_PORT"
  if is_root; then
    store=/var/lib/nats-server$sfx
    log=/var/log/nats-server$sfx.log
    pidfile=/run/phoenix-test-nats-server$sfx.pid
  else
    store="${TMPDIR:-/tmp}/phoenix-test-nats-$(id -u)$sfx"
    log="$store/nats-server.log"
    pidfile="$store/nats-server.pid"
  fi
  mkdir -p "$store" || die "cannot create the NATS store folder $store"
  step "NATS: starting $bin -a $PHX_NATS_HOST -p $PHX_NATS_PORT -js -sd $store (log: $log)"
  out=$(mktemp "${TMPDIR:-/tmp}/phoenix-nats-start.XXXXXX")
  local pid=
  if command -v start-stop-daemon >/dev/null 2>&1; then
    # The pidfile scopes "already running?" to the server we start: other
    # nats-server processes (tests may run their own on random ports) don't count.
    if ! start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$pidfile" \
      --exec "$bin" -- -a "$PHX_NATS_HOST" -p "$PHX_NATS_PORT" -js -sd "$store" -l "$log" \
      </dev/null >"$out" 2>&1; then
      cat "$out" >&2
      die "could not start nats-server"
    fi
    pid=$(cat "$pidfile" 2>/dev/null || true)
  else
    nohup setsid "$bin" -a "$PHX_NATS_HOST" -p "$PHX_NATS_PORT" -js -sd "$store" -l "$log" \
      </dev/null >"$out" 2>&1 &
    pid=$!
  fi
  # Output (if any) went to $out, so nothing holds our stdout open.
  if [ -s "$out" ]; then cat "$out" >&2; fi
  rm -f "$out"
  wait_port "$PHX_NATS_HOST" "$PHX_NATS_PORT" "nats-server" "$log" "$pid"
}

ensure_nats() {
  if [ -n "${PHOENIX_TEST_NATS_URL:-}" ]; then
    step "NATS: using PHOENIX_TEST_NATS_URL=$(redact_url "$PHOENIX_TEST_NATS_URL")"
    export PHOENIX_TEST_NATS_URL
    return 0
  fi
  if port_open "$PHX_NATS_HOST" "$PHX_NATS_PORT"; then
    step "NATS: already listening on $PHX_NATS_HOST:$PHX_NATS_PORT"
  else
    local bin
    bin=$(command -v nats-server || true)
    if [ -z "$bin" ]; then
      is_root || die "no NATS server on $PHX_NATS_HOST:$PHX_NATS_PORT and nats-server is not installed.
       Install it (apt-get install nats-server, as root), start one with
       'nats-server -a 127.0.0.1 -p 4222 -js -sd DIR', or set PHOENIX_TEST_NATS_URL."
      step "NATS: nats-server not installed; installing it"
      apt_install nats-server
      bin=$(command -v nats-server || true)
      [ -n "$bin" ] || die "nats-server is still not on PATH after installing the package"
    fi
    # The package may have started a server of its own.
    if ! port_open "$PHX_NATS_HOST" "$PHX_NATS_PORT"; then
      start_nats "$bin"
    fi
  fi
  local info
  info=$(nats_info "$PHX_NATS_HOST" "$PHX_NATS_PORT" || true)
  case "$info" in
    INFO*'"jetstream":true'*) ;;
    INFO*) die "the NATS server on $PHX_NATS_HOST:$PHX_NATS_PORT runs without JetStream.
       Restart it with -js (nats-server -a 127.0.0.1 -p 4222 -js -sd DIR), or set PHOENIX_TEST_NATS_URL." ;;
    *) die "$PHX_NATS_HOST:$PHX_NATS_PORT answers, but not like a NATS server (no INFO greeting). Set PHOENIX_TEST_NATS_URL." ;;
  esac
  export PHOENIX_TEST_NATS_URL="nats://$PHX_NATS_HOST:$PHX_NATS_PORT"
  note "NATS with JetStream ready at $PHOENIX_TEST_NATS_URL"
}

# --- PostgreSQL --------------------------------------------------------------

# Start (creating it first when there is none) the local Debian cluster.
start_postgres() {
  if ! command -v pg_lsclusters >/dev/null 2>&1; then
    is_root || die "no PostgreSQL on $PHX_PG_HOST:$PHX_PG_PORT and PostgreSQL is not installed.
       Install it (apt-get install postgresql, as root) or set PHOENIX_TEST_DATABASE_URL."
    step "PostgreSQL: not installed; installing it"
    apt_install postgresql
    # The package creates and may already have started a cluster.
    if port_open "$PHX_PG_HOST" "$PHX_PG_PORT"; then
      return 0
    fi
  fi

  local clusters line ver name port status out
  clusters=$(pg_lsclusters --no-header 2>/dev/null || true)
  if [ -z "$clusters" ]; then
    is_root || die "PostgreSQL is installed but has no cluster; create one (pg_createcluster VERSION main, as root) or set PHOENIX_TEST_DATABASE_URL"
    ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    [ -n "$ver" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)"
    step "PostgreSQL: creating cluster $ver/main on port $PHX_PG_PORT"
    out=$(mktemp "${TMPDIR:-/tmp}/phoenix-pg.XXXXXX")
    if ! pg_createcluster --port "$PHX_PG_PORT" "$ver" main </dev/null >"$out" 2>&1; then
      cat "$out" >&2
      die "pg_createcluster $ver main failed"
    fi
    rm -f "$out"
    clusters=$(pg_lsclusters --no-header)
  fi

  # Prefer the cluster configured for port 5432; else take the first one and its port.
  line=$(awk -v p="$PHX_PG_PORT" '$3 == p' <<<"$clusters" | head -n 1)
  [ -n "$line" ] || line=$(head -n 1 <<<"$clusters")
  read -r ver name port status _ <<<"$line" || true
  if [ -z "${ver:-}" ] || [ -z "${name:-}" ] || [ -z "${port:-}" ]; then
    die "cannot parse pg_lsclusters output: $line"
  fi
  if [ "$port" != "$PHX_PG_PORT" ]; then
    note "no cluster is configured for port $PHX_PG_PORT; using $ver/$name on port $port"
    PHX_PG_PORT=$port
    if port_open "$PHX_PG_HOST" "$PHX_PG_PORT"; then
      return 0
    fi
  fi

  step "PostgreSQL: starting cluster $ver/$name (was: $status)"
  out=$(mktemp "${TMPDIR:-/tmp}/phoenix-pg.XXXXXX")
  # Output to a file, not our stdout: the server must not hold our pipe open.
  if ! pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start </dev/null >"$out" 2>&1; then
    cat "$out" >&2
    # "already running" is fine; anything else shows up in wait_port below.
    grep -qi 'already running' "$out" || warn "pg_ctlcluster $ver $name start failed"
  fi
  rm -f "$out"
  wait_port "$PHX_PG_HOST" "$PHX_PG_PORT" "PostgreSQL $ver/$name" "/var/log/postgresql/postgresql-$ver-$name.log"
}

ensure_psql() {
  command -v psql >/dev/null 2>&1 && return 0
  is_root || die "psql (the PostgreSQL client) is not installed: apt-get install postgresql-client"
  apt_install postgresql-client
}

# psql as a PostgreSQL superuser, by the method pg_find_admin found.
pg_admin_psql() {
  case "$PHX_PG_ADMIN" in
    socket)
      # Peer authentication over the Unix socket, as the postgres OS user
      # (from / so psql does not complain about an unreadable working dir).
      (cd / && runuser -u postgres -- psql -X -q -w -v ON_ERROR_STOP=1 \
        -p "$PHX_PG_PORT" -d postgres "$@")
      ;;
    self)
      psql -X -q -w -v ON_ERROR_STOP=1 -p "$PHX_PG_PORT" -d postgres "$@"
      ;;
    tcp)
      psql -X -q -w -v ON_ERROR_STOP=1 -h "$PHX_PG_HOST" -p "$PHX_PG_PORT" -U postgres -d postgres "$@"
      ;;
    *) return 1 ;;
  esac
}

# Find a way to act as a superuser: the postgres OS user over the socket (root,
# Debian), being the postgres OS user, or TCP as role postgres (trust setups).
pg_find_admin() {
  local m
  for m in socket self tcp; do
    case "$m" in
      socket)
        if ! is_root || ! id -u postgres >/dev/null 2>&1 || ! command -v runuser >/dev/null 2>&1; then
          continue
        fi
        ;;
      self)
        if [ "$(id -un)" != postgres ]; then
          continue
        fi
        ;;
    esac
    PHX_PG_ADMIN=$m
    if pg_admin_psql -Atc 'select 1' >/dev/null 2>&1; then
      return 0
    fi
  done
  PHX_PG_ADMIN=none
  return 1
}

# Idempotent: create the role, or reset its password and rights.
pg_role_sql() {
  cat <<SQL
DO \$phoenix\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '$PHX_PG_ROLE') THEN
    CREATE ROLE $PHX_PG_ROLE LOGIN CREATEDB PASSWORD '$PHX_PG_PASSWORD';
  ELSE
    ALTER ROLE $PHX_PG_ROLE WITH LOGIN CREATEDB PASSWORD '$PHX_PG_PASSWORD';
  END IF;
END
\$phoenix\$;
SQL
}

# psql as the test role over TCP (password auth: works with trust and scram).
pg_role_psql() {
  PGPASSWORD=$PHX_PG_PASSWORD psql -X -q -w -v ON_ERROR_STOP=1 \
    -h "$PHX_PG_HOST" -p "$PHX_PG_PORT" -U "$PHX_PG_ROLE" -d postgres "$@"
}

ensure_pg_role() {
  if pg_find_admin; then
    step "PostgreSQL: ensuring login role '$PHX_PG_ROLE' (CREATEDB) exists [as superuser via $PHX_PG_ADMIN]"
    pg_admin_psql -c "$(pg_role_sql)" >/dev/null || die "could not create or update role '$PHX_PG_ROLE'"
  else
    warn "no superuser access to PostgreSQL on $PHX_PG_HOST:$PHX_PG_PORT; assuming role '$PHX_PG_ROLE' already exists"
  fi
  local createdb
  createdb=$(pg_role_psql -Atc 'SELECT rolcreatedb FROM pg_catalog.pg_roles WHERE rolname = current_user' 2>&1) ||
    die "cannot log in to PostgreSQL as $PHX_PG_ROLE/$PHX_PG_PASSWORD on $PHX_PG_HOST:$PHX_PG_PORT: $createdb
       Create the role (CREATE ROLE $PHX_PG_ROLE LOGIN CREATEDB PASSWORD '$PHX_PG_PASSWORD') or set PHOENIX_TEST_DATABASE_URL."
  [ "$createdb" = t ] || die "role '$PHX_PG_ROLE' lacks CREATEDB: ALTER ROLE $PHX_PG_ROLE CREATEDB"
}

# Best effort: drop phoenix_test_* databases that earlier (crashed or killed)
# runs left behind. Only databases nobody is connected to; with superuser access
# also only those older than 10 minutes, so a run going on beside this one
# keeps its databases.
cleanup_test_databases() {
  local list_sql names n=0 db
  list_sql="SELECT datname FROM pg_catalog.pg_database d
    WHERE datname LIKE 'phoenix\\_test\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.datid = d.oid)"
  if [ "$PHX_PG_ADMIN" != none ] && [ -n "$PHX_PG_ADMIN" ]; then
    list_sql="$list_sql
      AND (pg_catalog.pg_stat_file('base/' || d.oid || '/PG_VERSION')).modification
          < now() - interval '10 minutes'"
    names=$(pg_admin_psql -Atc "$list_sql" 2>/dev/null) || names=
  else
    names=$(pg_role_psql -Atc "$list_sql" 2>/dev/null) || names=
  fi
  [ -n "$names" ] || return 0
  while IFS= read -r db; do
    [ -n "$db" ] || continue
    if [ "$PHX_PG_ADMIN" != none ] && [ -n "$PHX_PG_ADMIN" ]; then
      pg_admin_psql -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 && n=$((n + 1))
    else
      pg_role_psql -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 && n=$((n + 1))
    fi
  done <<<"$names"
  if ((n > 0)); then
    note "dropped $n leftover phoenix_test_* database(s)"
  fi
  return 0
}

ensure_postgres() {
  if [ -n "${PHOENIX_TEST_DATABASE_URL:-}" ]; then
    step "PostgreSQL: using PHOENIX_TEST_DATABASE_URL=$(redact_url "$PHOENIX_TEST_DATABASE_URL")"
    export PHOENIX_TEST_DATABASE_URL
    return 0
  fi
  if port_open "$PHX_PG_HOST" "$PHX_PG_PORT"; then
    step "PostgreSQL: already listening on $PHX_PG_HOST:$PHX_PG_PORT"
  else
    start_postgres
  fi
  ensure_psql
  ensure_pg_role
  # Loopback only, so no TLS: libpq's OpenSSL state torn down at process exit while pool threads still
  # hold connections made test processes die with SIGSEGV after their test had passed.
  export PHOENIX_TEST_DATABASE_URL="postgres://$PHX_PG_ROLE:$PHX_PG_PASSWORD@$PHX_PG_HOST:$PHX_PG_PORT/postgres?sslmode=disable"
  step "PostgreSQL: dropping leftover phoenix_test_* databases"
  cleanup_test_databases || true
  note "PostgreSQL ready at $(redact_url "$PHOENIX_TEST_DATABASE_URL")"
}

ensure_services() {
  ensure_nats
  ensure_postgres
}
