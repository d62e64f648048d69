# Sourced by scripts/run and scripts/test: the one-time set-up of a fresh machine.
# Creates .venv with the project and its dev dependencies from requirements.lock, hashes checked
# (again when pyproject.toml or the lock changes)
# and installs redis-server where it can.

ensure_python() {
    PYTHON=${PYTHON:-python3}
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "error: Python 3.11 or newer is needed as '$PYTHON' (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
}

ensure_venv() {
    ensure_python
    if [ ! -x .venv/bin/python ]; then
        echo "creating .venv ..."
        "$PYTHON" -m venv .venv || { echo "error: '$PYTHON -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
    fi
    local stamp=".venv/.installed-$(cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)"
    if [ ! -f "$stamp" ]; then
        echo "installing the project and its dependencies into .venv ..."
        # Exactly the locked versions, each checked against its hash (scripts/lock refreshes the lock);
        # then the project itself, which adds nothing the lock does not hold.
        .venv/bin/python -m pip install --quiet --require-hashes -r requirements.lock
        .venv/bin/python -m pip install --quiet --no-deps -e .
        # --no-deps cannot notice a dependency that pyproject.toml gained and the lock lacks.
        .venv/bin/python -m pip check >/dev/null || { echo "error: requirements.lock lacks a dependency of pyproject.toml: run scripts/lock" >&2; exit 1; }
        rm -f .venv/.installed-*
        touch "$stamp"
    fi
}

ensure_redis_server() {
    command -v redis-server >/dev/null 2>&1 && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
        echo "installing redis-server ..."
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
    elif command -v brew >/dev/null 2>&1; then
        brew install redis
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "error: redis-server is not installed and could not be installed here." >&2
        echo "  Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)," >&2
        echo "  or point REDIS_URL at a Redis you run." >&2
        exit 1
    fi
}
