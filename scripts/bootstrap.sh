#!/usr/bin/env bash
# Installs what pausecast needs on a fresh Debian 12 machine: Debian packages (only those missing, so a
# second run costs nothing) and a local venv at .venv with the package and the requested extras.
# Usage: scripts/bootstrap.sh [EXTRAS]   e.g. scripts/bootstrap.sh dev,executor
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

apt_packages=(python3-venv)
if [[ ",$extras," == *",executor,"* ]]; then
    # The testbed: two libvirt daemons, QEMU, the test guest's toolchain, namespaces and tc, lldpad, and
    # strace (to capture what libvirtd sends lldpad).
    apt_packages+=(qemu-system-x86 libvirt-daemon-system libvirt-dev pkg-config gcc gcc-multilib binutils
                   iproute2 lldpad tcpdump libnl-3-200 strace)
fi
if [[ ",$extras," == *",dev,"* ]]; then
    # the HTML report's test opens its pages in a real browser (tests/test_html_report.py)
    apt_packages+=(chromium)
fi
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "bootstrap: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
spec="."
[[ -n "$extras" ]] && spec=".[${extras}]"
.venv/bin/python -m pip install -q -e "$spec"
