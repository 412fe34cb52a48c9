#!/usr/bin/env bash
# Bootstrap and task runner. Needs only Python 3.11 on the machine:
#   ./dev.sh run [usage-etl run options]   run the whole pipeline (bundled emulator by default)
#   ./dev.sh test [pytest options]         install what the tests need, then run them
#   ./dev.sh lint                          ruff check + ruff format --check
#   ./dev.sh sync                          just create/refresh .venv from uv.lock
set -euo pipefail
cd "$(dirname "$0")"

UV_VERSION=0.13.8
PYTHON_BIN=${PYTHON_BIN:-$(command -v python3.11 || command -v python3)}
# The interpreter itself, not a launcher (a pyenv shim): uv compares it with the one .venv was
# made from, and a shim's path never matches, so every sync recreated .venv from scratch.
PYTHON_BIN=$("$PYTHON_BIN" -c 'import sys; print(sys.executable)')

sync() {
  if [[ ! -x .tools/bin/uv ]]; then
    "$PYTHON_BIN" -m venv .tools
    .tools/bin/python -m pip install --quiet "uv==${UV_VERSION}"
  fi
  # bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (as on the shared machine) every
  # process otherwise compiled dagster, pandas and sqlalchemy from source (~5 s CPU per start)
  .tools/bin/uv sync --frozen --quiet --compile-bytecode --python "$PYTHON_BIN"
  # ... and so is the project's own (installed editable, so uv leaves it to the interpreter): every
  # usage-etl, dg, dagster and test process compiled ~200 modules from source (~0.5 s CPU each).
  # A module edited later is compiled again in memory until the next sync (its .pyc is stale).
  .venv/bin/python -c '
import compileall, sys, tomllib
wheel = tomllib.load(open("pyproject.toml", "rb"))["tool"]["hatch"]["build"]["targets"]["wheel"]
ok = all(compileall.compile_dir(p, quiet=1, workers=0) for p in [*wheel["packages"], "tests"])
sys.exit(0 if ok else 1)'
}

# System packages the test suite drives for real (a browser, PostgreSQL). Installed when missing
# and when we may (root with apt-get); otherwise the tests that need them say what is missing.
system_packages() {
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  [[ -x "$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)/initdb" ]] 2>/dev/null \
    || missing+=(postgresql)
  if ((${#missing[@]})) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "dev.sh: installing ${missing[*]} (Debian packages)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  sync) sync ;;
  run) sync; exec .venv/bin/usage-etl run "$@" ;;
  test) sync; system_packages; exec .venv/bin/pytest "$@" ;;
  lint) sync; .venv/bin/ruff check . && .venv/bin/ruff format --check . ;;
  *) sed -n '2,6p' "$0"; exit 2 ;;
esac
