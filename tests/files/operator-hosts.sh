#!/bin/sh
# Two libvirt hosts on this machine, op-a (10.214.0.1) and op-b (10.214.0.2), set up the way an operator
# sets up two hosts for live migration, for tests/test_operator_hosts.py. Nothing of pausecast is used:
# each host is a network namespace (`ip netns`), a UTS namespace with its own hostname and a private
# mount namespace where libvirt's directories are bind mounts of STATE/<host>/; a veth joins the two;
# each libvirtd listens on TCP (auth none) for the other and on its UNIX socket, which this machine
# reaches at STATE/<host>/run/libvirt-sock.
#
#   operator-hosts.sh up STATE      both hosts, returning once each daemon answers the other over TCP
#   operator-hosts.sh down STATE    kills everything `up` started (QEMU too), also after a crash, and
#                                   removes the namespaces and STATE; that is every process in the
#                                   hosts' namespaces and every process whose command line names STATE/
#
# The subnet is one that no pausecast testbed uses (they take 10.213.x and 10.21x.x).
set -eu

PORT=16509
HOSTS="op-a:10.214.0.1 op-b:10.214.0.2"
SELF=$(readlink -f "$0")
QEMU=/usr/bin/qemu-system-x86_64

die() { echo "operator-hosts: $*" >&2; exit 1; }

write_config() {  # host address uuid
    d=$STATE/$1
    mkdir -p "$d/etc" "$d/lib" "$d/log" "$d/cache" "$d/run"
    # The README's log settings, exactly: pausecast reads the phases from migration.log.
    cat >"$d/etc/libvirtd.conf" <<EOF
listen_tls = 0
listen_tcp = 1
listen_addr = "$2"
tcp_port = "$PORT"
auth_tcp = "none"
auth_unix_rw = "none"
unix_sock_rw_perms = "0700"
host_uuid = "$3"
log_filters = "1:qemu.qemu_migration 1:qemu.qemu_monitor_json 1:conf.virdomainjob 1:qemu.qemu_process"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log 1:file:/var/log/libvirt/migration.log"
EOF
    # What a namespace without systemd needs: no SELinux/AppArmor labelling, no cgroups, no private /dev
    # per QEMU, no virtlogd (stdio_handler "file"); QEMU runs as root, and nothing chowns or records the
    # owners of the kernel and serial log, which both hosts open. QEMU's migration stream listens on, and
    # is announced at, the host's own address on the veth.
    cat >"$d/etc/qemu.conf" <<EOF
security_driver = "none"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_address = "$2"
migration_host = "$2"
EOF
    {
        echo "127.0.0.1 localhost"
        for peer in $HOSTS; do echo "${peer#*:} ${peer%%:*}"; done
    } >"$d/hosts"
}

boot() {  # host; runs inside the host's fresh namespaces and becomes its libvirtd
    d=$STATE/$1
    hostname "$1"
    # A host's own /run: libvirtd's pid file and lock files would collide with another host's.
    mount -t tmpfs -o mode=0755,size=64m "$1-run" /run
    mkdir -p /run/libvirt
    mount --bind "$d/run" /run/libvirt
    mount --bind "$d/etc" /etc/libvirt
    mount --bind "$d/lib" /var/lib/libvirt
    mount --bind "$d/log" /var/log/libvirt
    mount --bind "$d/cache" /var/cache/libvirt
    mount --bind "$d/hosts" /etc/hosts
    # Detached, as a service manager would run it: init becomes its parent (and its QEMUs'), so no
    # process of ours has to stay. The config path names STATE, which is how `down` finds a daemon
    # that outlived its namespace's name.
    exec libvirtd --daemon --listen --config "$d/etc/libvirtd.conf" --pid-file /run/libvirt/libvirtd.pid
}

up() {
    [ "$(id -u)" = 0 ] || die "needs root"
    for tool in ip unshare libvirtd virsh; do command -v $tool >/dev/null || die "missing $tool"; done
    [ -x $QEMU ] || die "missing $QEMU"
    for hp in $HOSTS; do
        ! ip netns list | grep -qw "${hp%%:*}" || die "${hp%%:*} exists already: run down first"
    done
    mkdir -p "$STATE"
    for hp in $HOSTS; do
        write_config "${hp%%:*}" "${hp#*:}" "$(cat /proc/sys/kernel/random/uuid)"
        ip netns add "${hp%%:*}"
        ip -n "${hp%%:*}" link set lo up
    done
    ip link add op-a0 netns op-a type veth peer name op-b0 netns op-b
    for hp in $HOSTS; do
        h=${hp%%:*}
        ip -n "$h" addr add "${hp#*:}/30" dev "${h}0"
        ip -n "$h" link set "${h}0" up
    done
    for hp in $HOSTS; do
        h=${hp%%:*}
        log=$STATE/$h/log/boot.log
        ip netns exec "$h" unshare --uts --mount --propagation private -- /bin/sh "$SELF" boot "$STATE" "$h" \
            </dev/null >"$log" 2>&1 || die "libvirtd on $h did not start: $(cat "$log")"
    done
    # The peer-to-peer path, as the source daemon takes it: each host's virsh to the other's TCP port.
    for a in op-a op-b; do
        for hp in $HOSTS; do
            b=${hp%%:*}
            [ "$a" = "$b" ] && continue
            name=$(ip netns exec "$a" virsh -c "qemu+tcp://${hp#*:}/system" hostname) ||
                die "$a cannot reach libvirtd on $b"
            [ "$name" = "$b" ] || die "$b's daemon says it is $name"
        done
    done
    # libvirtd probes each QEMU binary (seconds, twice each where /dev/kvm exists) the first time it
    # needs the host's capabilities, and keeps the result in /var/cache/libvirt: a host in service has
    # done so long ago, so a fresh one does it now, before anything is measured.
    for hp in $HOSTS; do
        virsh -c "qemu+unix:///system?socket=$STATE/${hp%%:*}/run/libvirt-sock" capabilities >/dev/null &
    done
    wait
}

down() {
    pids=""
    for hp in $HOSTS; do
        pids="$pids $(ip netns pids "${hp%%:*}" 2>/dev/null || true)"
    done
    # survivors of a crash: a daemon or QEMU whose namespace lost its name, or a host's mount namespace
    pids="$pids $(pgrep -f -- "$STATE/" || true)"
    pids="$pids $(grep -l -- " $STATE/" /proc/[0-9]*/mountinfo 2>/dev/null | cut -d/ -f3 || true)"
    pids=$(echo "$pids" | tr ' ' '\n' | grep -vx -e '' -e "$$" | sort -un || true)
    for sig in TERM KILL; do
        [ -n "$pids" ] || break
        # shellcheck disable=SC2086
        kill -s $sig $pids 2>/dev/null || true
        i=0
        while [ $i -lt 50 ]; do
            left=""
            for p in $pids; do
                st=$(ps -o stat= -p "$p" 2>/dev/null || true)
                case $st in "" | Z*) ;; *) left="$left $p" ;; esac
            done
            pids=$left
            [ -n "$pids" ] || break
            sleep 0.1
            i=$((i + 1))
        done
    done
    [ -z "$pids" ] || die "could not kill$pids"
    # the veth goes with its namespaces
    for hp in $HOSTS; do ip netns del "${hp%%:*}" 2>/dev/null || true; done
    grep -- " $STATE/" /proc/self/mountinfo | cut -d' ' -f5 | sort -r | xargs -r umount -l
    rm -rf "$STATE"
}

[ $# -ge 2 ] || die "usage: $0 up|down STATE_DIR"
STATE=${2%/}
case $STATE in /?*) ;; *) die "STATE_DIR must be an absolute path" ;; esac
case $1 in
up) up ;;
down) down ;;
boot) boot "$3" ;;
*) die "usage: $0 up|down STATE_DIR" ;;
esac
