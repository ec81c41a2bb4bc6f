#!/usr/bin/env bash
# System parts that some tests need (they skip without them on a user's machine; CI requires them).
# Debian/Ubuntu, as root. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    dataset-fashion-mnist \
    gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
    debootstrap qemu-user-static binfmt-support zstd \
    chromium fonts-liberation \
    >/dev/null
echo "system parts installed"
