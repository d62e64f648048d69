# Sourced by .ci/run: the load generator the benchmark's smoke test drives (Debian's wrk).
if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk (for the benchmark's smoke run)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
