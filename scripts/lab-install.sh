#!/usr/bin/env bash
# Installs what the BGP lab needs (calico-rr lab, tests/integration/test_lab_*.py):
# BIRD 1.6 (Debian package `bird`) and iproute2.  Needs root; a no-op when both
# are already there.  The lab itself also needs root to make network namespaces.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
command -v bird >/dev/null 2>&1 || [ -x /usr/sbin/bird ] || need+=(bird)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "lab-install: need root to install ${need[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Debian's bird package would start a system-wide daemon; the lab runs its own
# daemons in namespaces, so keep package scripts from starting services.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "lab-install: installed ${need[*]}"
