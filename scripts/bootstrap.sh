# Sourced by scripts/demo and scripts/test: make (or reuse) .venv with tokenward installed.
# Usage: . scripts/bootstrap.sh [extras]   e.g. ". scripts/bootstrap.sh test"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TOKENWARD_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "tokenward needs Python >= 3.11 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment in $VENV" >&2
  "$PY" -m venv "$VENV"
fi
# Reinstall only when the project definition changed since the last install.
STAMP="$VENV/.tokenward-installed-$EXTRAS"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  spec="$ROOT"
  [ -n "$EXTRAS" ] && spec="$ROOT[$EXTRAS]"
  "$VENV/bin/python" -m pip install --quiet -e "$spec" >&2
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
