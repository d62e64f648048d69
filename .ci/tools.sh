# Sourced by .ci/run: tools the tests drive, from Debian's packages when absent:
# wrk (the benchmark's smoke run), nginx (the reverse-proxy end-to-end test), redis-sentinel
# (the failover end-to-end test), prometheus
# (promtool, for the alert rules' unit tests), chromium (the status page, headless) and
# systemd (systemd-analyze, rating the units' sandbox offline; no systemd needs to run).
missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing="$missing nginx"
command -v redis-sentinel >/dev/null 2>&1 || missing="$missing redis-sentinel"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
if [ -n "$missing" ]; then
    echo "installing:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
