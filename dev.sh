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

sync() {
  if [[ ! -x .tools/bin/uv ]]; then
    "$PYTHON_BIN" -m venv .tools
    .tools/bin/python -m pip install --quiet "uv==${UV_VERSION}"
  fi
  # --compile-bytecode: the .pyc files of every package, written once here (an environment with
  # PYTHONDONTWRITEBYTECODE=1 would otherwise compile Dagster and pandas in every process).
  .tools/bin/uv sync --frozen --quiet --compile-bytecode --python "$PYTHON_BIN"
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
  *) sed -n '2,7p' "$0"; exit 2 ;;
esac
