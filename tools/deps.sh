#!/bin/sh
# Install the Debian 12 packages alloy needs to build and test, if missing.
# Idempotent; works as root or through sudo. Nothing else is downloaded.
set -eu
PKGS="build-essential pkg-config libyaml-dev libhdf5-dev zlib1g-dev libjansson-dev
      libpcre2-dev libcmocka-dev hdf5-tools libopenblas-openmp-dev libopenmpi-dev openmpi-bin"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "deps: all packages present"
    exit 0
fi
echo "deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
