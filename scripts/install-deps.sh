#!/bin/sh
# Installs the Debian packages optvq needs to build and test, if any is missing.
# Runs apt-get as root (or through sudo). Set OPTVQ_NO_APT=1 to only check.
set -e
PKGS="build-essential pkg-config libopenblas-dev libcairo2-dev libgif-dev libpng-dev libyaml-dev libcjson-dev dataset-fashion-mnist zlib1g-dev libjpeg-dev libopenmpi-dev openmpi-bin libmicrohttpd-dev curl chromium chromium-driver python3-selenium"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ -n "$OPTVQ_NO_APT" ]; then
    echo "install-deps: missing Debian packages:$missing" >&2
    exit 1
fi
echo "install-deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
