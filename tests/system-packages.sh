#!/usr/bin/env bash
# What the tests need from Debian besides Python packages: slapd (LDAP tests), PostgreSQL
# (token store tests), curl, jq and promtool (the documented commands are run as written),
# chromium (the web console's tests drive it with Playwright), wrk (the HTTP benchmarks' load).
# Installed when missing (as root: apt-get works as it is on these machines).
set -euo pipefail
missing=()
[ -x /usr/sbin/slapd ] && command -v slappasswd >/dev/null || missing+=(slapd ldap-utils)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v wrk >/dev/null || missing+=(wrk)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "the tests need these Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
