#!/bin/bash
# An emulated Raspberry Pi for edgecnn: an arm64 Debian bookworm root filesystem (Python 3.11 like Pi OS bookworm)
# run through qemu-user-static + binfmt_misc, with ai-edge-litert + numpy from PyPI's aarch64 wheels in /opt/venv
# and its own arm64 OpenSSH server. Tests and `devices/emulated-pi.yaml` bench on it over real SSH.
#
# Usage (as root, Debian 12 x86-64):
#   scripts/emulated_pi.sh build            build or restore the rootfs (idempotent; never starts sshd)
#   scripts/emulated_pi.sh start PORT PUBKEY  mount /proc,/dev + ARM cpuinfo, start sshd on 127.0.0.1:PORT
#                                           accepting the key in PUBKEY for user `pi` (one sshd per port)
#   scripts/emulated_pi.sh stop PORT        stop that sshd; unmount when no other sshd of the rootfs runs
#   scripts/emulated_pi.sh status           the rootfs, cache tarball and running sshds
#   scripts/emulated_pi.sh path             print the rootfs directory
#
# Layout (EDGECNN_EMULATED_PI_DIR, default ~/.cache/edgecnn/emulated-pi):
#   rootfs/                     the arm64 tree; rootfs/.edgecnn-emulated-pi holds the recipe version when complete
#   rootfs-vN.tar.zst           cache of a complete tree: restored in ~2 s instead of ~7 min of debootstrap
#   key, key.pub, known_hosts   a default client key and the board's host key, used by devices/emulated-pi.yaml
#   run/sshd-PORT.pid           running sshds started by `start`
#
# Two pitfalls handled here: qemu passes the host's x86 /proc/cpuinfo through, which crashes XNNPACK's cpuinfo in
# Interpreter() (so an ARM cpuinfo is bind-mounted over it); and qemu's default "max" CPU gave wrong int8 results
# (so QEMU_CPU pins a Cortex-A72, the Pi 4's core, for sshd and every session it starts).
set -euo pipefail

RECIPE=1                                   # bump when the build steps change: old caches are then rebuilt
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=${EDGECNN_EMULATED_PI_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgecnn/emulated-pi}
R=$BASE/rootfs
TARBALL=$BASE/rootfs-v$RECIPE.tar.zst
STAMP=$R/.edgecnn-emulated-pi
export QEMU_CPU=${QEMU_CPU:-cortex-a72}
export DEBIAN_FRONTEND=noninteractive

log() { echo "emulated-pi: $*" >&2; }
die() { echo "emulated-pi: error: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mount)"; }

host_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ -e /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
    [ -e /usr/lib/binfmt.d/qemu-aarch64.conf ] || missing+=(binfmt-support)
    command -v zstd >/dev/null || missing+=(zstd)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing host packages: ${missing[*]}"
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

binfmt() {
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
        || die "cannot mount binfmt_misc (needs root outside an unprivileged container)"
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        [ -e /usr/lib/binfmt.d/qemu-aarch64.conf ] || die "qemu-user-static is not installed (apt-get install qemu-user-static)"
        cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register \
            || die "cannot register qemu-aarch64 with binfmt_misc"
    fi
}

mirror() {
    local m=${MIRROR:-}
    [ -n "$m" ] || m=$(grep -hm1 "^URIs:" /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2; exit}')
    [ -n "$m" ] || m=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    [ -n "$m" ] || die "no Debian mirror configured: set MIRROR=<url> or configure apt (sources.list or sources.list.d/*.sources)"
    echo "$m"
}

mount_all() {   # mounts used by the build and by a running sshd
    mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
    mountpoint -q "$R/dev" || mount --bind /dev "$R/dev"
    mountpoint -q "$R/dev/pts" || mount --bind /dev/pts "$R/dev/pts"
    cp "$HERE/emulated_pi/cpuinfo-cortex-a72.txt" "$R/etc/edgecnn-cpuinfo"
    grep -q 'BCM2835' "$R/proc/cpuinfo" || mount --bind "$R/etc/edgecnn-cpuinfo" "$R/proc/cpuinfo"
}

umount_all() {
    local m
    for m in "$R/proc/cpuinfo" "$R/proc" "$R/dev/pts" "$R/dev"; do
        while mountpoint -q "$m" 2>/dev/null; do umount "$m" 2>/dev/null || umount -l "$m"; done
    done
}

in_chroot() {  # run a shell command in the rootfs with a clean environment
    chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        QEMU_CPU="$QEMU_CPU" DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 sh -c "$1"
}

running_sshds() {
    local f
    for f in "$BASE"/run/sshd-*.pid; do
        [ -e "$f" ] || continue
        if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$f"; else rm -f "$f"; fi
    done
}

build() {
    need_root
    host_tools
    binfmt
    mkdir -p "$BASE"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ]; then
        log "rootfs ready at $R (recipe $RECIPE)"
        default_key
        return 0
    fi
    if [ -n "$(running_sshds)" ]; then die "an sshd of the emulated Pi is running; stop it first"; fi
    umount_all
    if [ -f "$TARBALL" ]; then
        log "restoring $TARBALL"
        rm -rf "$R" "$R.partial"
        mkdir -p "$R.partial"
        tar --zstd -xpf "$TARBALL" --numeric-owner -C "$R.partial"
        mv "$R.partial" "$R"
        [ "$(cat "$STAMP" 2>/dev/null)" = "$RECIPE" ] || die "cache $TARBALL is incomplete; delete it and rebuild"
        default_key
        log "rootfs restored at $R"
        return 0
    fi

    local t0=$SECONDS
    # 1. base system (~5-7 min): into a .partial directory so an interrupted debootstrap is never taken as done
    if [ ! -x "$R/usr/bin/python3" ]; then
        rm -rf "$R.partial"
        log "debootstrap arm64 bookworm from $(mirror) (takes ~5-7 min)"
        debootstrap --arch=arm64 --variant=minbase \
            --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$R.partial" "$(mirror)" >/dev/null
        rm -rf "$R"
        mv "$R.partial" "$R"
    fi
    trap umount_all EXIT
    mount_all
    cp /etc/resolv.conf "$R/etc/resolv.conf"
    # 2. pip inside must trust the host's CA bundle (networks that intercept TLS)
    cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/host-ca-bundle.crt"
    printf '[global]\ncert = /etc/ssl/certs/host-ca-bundle.crt\ndisable-pip-version-check = true\n' > "$R/etc/pip.conf"
    # 3. LiteRT (~45 s): the aarch64 wheels from the package index, as a user would install them on a Pi
    if [ ! -x "$R/opt/venv/bin/python" ] || ! in_chroot '/opt/venv/bin/python -c "import ai_edge_litert, numpy"' 2>/dev/null; then
        log "installing ai-edge-litert + numpy into /opt/venv"
        in_chroot 'python3 -m venv /opt/venv && /opt/venv/bin/pip install -q ai-edge-litert numpy'
    fi
    # 4. the board's sshd (~60 s); policy-rc.d keeps the package from starting services in the chroot
    printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"
    chmod +x "$R/usr/sbin/policy-rc.d"
    if [ ! -x "$R/usr/sbin/sshd" ]; then
        log "installing openssh-server"
        in_chroot 'apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-server >/dev/null'
    fi
    in_chroot 'apt-get clean; rm -rf /var/lib/apt/lists/*'
    [ -f "$R/etc/ssh/ssh_host_ed25519_key" ] || in_chroot 'ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key'
    in_chroot 'id pi >/dev/null 2>&1 || useradd -m -s /bin/bash pi; usermod -p "*" pi; mkdir -p /run/sshd /etc/ssh/edgecnn-keys'
    cat > "$R/etc/ssh/sshd_edgecnn.conf" <<EOF
# edgecnn's emulated Pi: key-only logins on loopback; the port and the authorized keys come from the command line
ListenAddress 127.0.0.1
Port 2222
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
UsePAM no
Subsystem sftp /usr/lib/openssh/sftp-server
SetEnv QEMU_CPU=$QEMU_CPU
EOF
    umount_all
    trap - EXIT
    echo "$RECIPE" > "$STAMP"
    log "rootfs built in $((SECONDS - t0)) s; caching it as $TARBALL"
    tar --zstd -cpf "$TARBALL.tmp" --numeric-owner -C "$R" .
    mv "$TARBALL.tmp" "$TARBALL"
    default_key
    log "rootfs ready at $R"
}

default_key() {  # the client key and known_hosts that devices/emulated-pi.yaml points at
    if [ ! -f "$BASE/key" ]; then
        if command -v ssh-keygen >/dev/null; then
            ssh-keygen -q -t ed25519 -N "" -C edgecnn-emulated-pi -f "$BASE/key"
        else
            in_chroot 'rm -f /tmp/k /tmp/k.pub; ssh-keygen -q -t ed25519 -N "" -C edgecnn-emulated-pi -f /tmp/k'
            mv "$R/tmp/k" "$BASE/key"; mv "$R/tmp/k.pub" "$BASE/key.pub"
        fi
        chmod 600 "$BASE/key"
    fi
    # the board's host key as a known_hosts line for [127.0.0.1]:2222, so the shipped profile checks it
    printf '[127.0.0.1]:2222 %s\n' "$(cut -d' ' -f1,2 "$R/etc/ssh/ssh_host_ed25519_key.pub")" > "$BASE/known_hosts"
}

start() {
    need_root
    local port=${1:?usage: start PORT PUBKEY} pub=${2:?usage: start PORT PUBKEY}
    [ -f "$STAMP" ] || die "rootfs not built: run scripts/emulated_pi.sh build"
    [ -f "$pub" ] || die "public key $pub not found"
    binfmt
    mkdir -p "$BASE/run"
    local pidf=$BASE/run/sshd-$port.pid
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then die "an sshd already runs on port $port"; fi
    mount_all
    mkdir -p "$R/run/sshd" "$R/etc/ssh/edgecnn-keys"
    install -m 644 "$pub" "$R/etc/ssh/edgecnn-keys/$port"
    rm -f "$R/run/sshd-$port.pid"
    setsid chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin QEMU_CPU="$QEMU_CPU" \
        /usr/sbin/sshd -f /etc/ssh/sshd_edgecnn.conf -p "$port" \
        -o "AuthorizedKeysFile=/etc/ssh/edgecnn-keys/$port" -o "PidFile=/run/sshd-$port.pid" \
        -E "/var/log/sshd-edgecnn-$port.log" </dev/null >/dev/null 2>&1 &
    local i
    for i in $(seq 1 150); do     # sshd daemonizes and writes its pid file once it listens (~1-3 s emulated)
        if [ -s "$R/run/sshd-$port.pid" ]; then
            cp "$R/run/sshd-$port.pid" "$pidf"
            log "sshd on 127.0.0.1:$port (pid $(cat "$pidf")): ssh -p $port pi@127.0.0.1"
            return 0
        fi
        sleep 0.2
    done
    tail -5 "$R/var/log/sshd-edgecnn-$port.log" >&2 2>/dev/null || true
    die "sshd did not start on port $port"
}

stop() {
    local port=${1:?usage: stop PORT}
    local pidf=$BASE/run/sshd-$port.pid
    if [ -f "$pidf" ]; then
        local pid; pid=$(cat "$pidf")
        # the listener, then any session processes it left (they run as children of it or of its sessions)
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidf"
    fi
    if [ -z "$(running_sshds)" ]; then umount_all; fi
}

status() {
    echo "rootfs:  $R ($( [ -f "$STAMP" ] && echo "recipe $(cat "$STAMP")" || echo "not built"))"
    echo "cache:   $TARBALL ($( [ -f "$TARBALL" ] && du -h "$TARBALL" | cut -f1 || echo "absent"))"
    local f
    for f in $(running_sshds); do echo "sshd:    pid $(cat "$f") port $(basename "$f" .pid | cut -d- -f2)"; done
}

case "${1:-build}" in
    build) build ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    status) status ;;
    path) echo "$R" ;;
    -h|--help|help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command $1 (build, start, stop, status, path)" ;;
esac
