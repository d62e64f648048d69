# Sourced by .ci/run: tools the tests drive, from Debian's packages when absent:
# wrk (the benchmark's smoke run) and nginx (the reverse-proxy end-to-end test).
missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing="$missing nginx"
if [ -n "$missing" ]; then
    echo "installing:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
