# shellcheck shell=bash
#
# /opt/failover/lib.sh: the commands the host (hack/failover) sends to its
# VMs through the agent. Each prints what it did and returns non-zero on
# failure. bash, in the Debian guests.

FO_NAME=vm FO_IP='' FO_SIP='' FO_MTU=1500
for kv in $(cat /proc/cmdline); do
	case $kv in
	fo.name=*) FO_NAME=${kv#*=} ;;
	fo.ip=*) FO_IP=${kv#*=} ;;
	fo.sip=*) FO_SIP=${kv#*=} ;;
	fo.mtu=*) FO_MTU=${kv#*=} ;;
	esac
done

HA_DEV=/dev/md0          # the mirror (on the master, and on a replica that took over)
HA_MNT=/srv/ha           # where the replicated filesystem is mounted
EXPORT=$HA_MNT/export    # the NFS export (fsid=1 on every server)
STATE=$HA_MNT/nfsstate   # /var/lib/nfs, on the replicated filesystem (NFSv4 client records)
FSID=1
CLIENT_MOUNTS=/mnt       # the client's mount points: /mnt/v3, /mnt/v4

now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
die() {
	echo "ERROR: $*"
	exit 1
}

# wait_for SECONDS WHAT COMMAND...: run COMMAND every 0.2 s until it succeeds.
wait_for() {
	local limit=$1 what=$2 t0
	shift 2
	t0=$(now)
	while ! "$@"; do
		if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
			echo "timeout: no $what after ${limit}s"
			return 1
		fi
		sleep 0.2
	done
}

# guest_setup: what udev's coldplug would have done for the disks (the
# guests skip the coldplug: the disk group owns /dev/vd*), and eth0.
guest_setup() {
	udevadm trigger --subsystem-match=block --action=add
	udevadm settle -t 20
	net_setup
}

net_setup() {
	local _
	for _ in $(seq 100); do
		[ -e /sys/class/net/eth0 ] && break
		sleep 0.1
	done
	ip link set lo up
	ip link set eth0 mtu "$FO_MTU" up
	[ -z "$FO_IP" ] || ip addr add "$FO_IP" dev eth0
}

# hello: wait until systemd has booted; print the boot time.
hello() {
	local state
	state=$(timeout 120 systemctl is-system-running --wait 2>/dev/null)
	echo "$FO_NAME up $(now)s, systemd $state, kernel $(uname -r), eth0 $(ip -4 -o addr show dev eth0 | awk '{ print $4 }')"
	systemd-analyze time 2>/dev/null | head -n 1
	if [ "$state" != running ]; then
		systemctl --failed --no-legend --plain
		[ "$state" = degraded ] || return 1
	fi
}

# ---------------------------------------------------------------------------
# replicas: aoetarget from its systemd unit

# target_start SHELF SLOT: export /dev/vdb as eSHELF.SLOT on eth0 with
# aoetarget.service (Type=notify: start returns once it serves).
target_start() {
	mkdir -p /etc/aoetarget
	cat >/etc/aoetarget/aoetarget.toml <<EOF
# written by hack/failover
state_dir = "/var/lib/aoetarget"
control_socket = "/run/aoetarget/control.sock"

[defaults]
interfaces = ["eth0"]

[[export]]
name = "disk"
shelf = $1
slot = $2
file = "/dev/vdb"
EOF
	aoetarget --check-config /etc/aoetarget/aoetarget.toml || die "aoetarget --check-config failed"
	local t0
	t0=$(now)
	if ! systemctl start aoetarget.service; then
		journalctl -u aoetarget.service --no-pager -n 20
		die "systemctl start aoetarget.service failed"
	fi
	echo "aoetarget.service $(systemctl is-active aoetarget.service) in $(since "$t0")s: e$1.$2 = /dev/vdb ($(($(blockdev --getsize64 /dev/vdb) / 1048576)) MiB) on eth0, user $(ps -o user= -p "$(systemctl show -P MainPID aoetarget.service)")"
	# The daemon keeps running (and retries) when an export fails: wait for
	# the export itself to serve.
	wait_for 30 "export serving" export_serving || { aoetarget status 2>&1; return 1; }
	aoetarget status 2>&1 | head -n 5
}
export_serving() { aoetarget status 2>/dev/null | awk '$1 == "disk" && $3 == "serving" { ok = 1 } END { exit !ok }'; }

# target_systemd: what systemd does with aoetarget.service in this VM
# besides starting it: a reload with the same file keeps the same process
# and its export serving (Type=notify: RELOADING=1, then READY=1); a daemon
# frozen with SIGSTOP stops its watchdog keep-alives and systemd kills and
# restarts it (a drop-in shortens WatchdogSec to 3 s for the test, then goes).
target_systemd() {
	local pid t0 restarts dropin=/run/systemd/system/aoetarget.service.d/failover-watchdog.conf
	pid=$(systemctl show -P MainPID aoetarget.service)
	systemctl reload aoetarget.service || die "systemctl reload aoetarget.service failed"
	[ "$(systemctl show -P MainPID aoetarget.service)" = "$pid" ] || die "reload changed the main PID"
	wait_for 10 "export serving after the reload" export_serving || return 1
	echo "reload: same process (pid $pid), export serving, status: $(systemctl show -P StatusText aoetarget.service)"
	journalctl -u aoetarget.service --no-pager -o cat | grep -m1 'msg=reloaded' || die "no 'reloaded' line in the journal"

	mkdir -p "${dropin%/*}"
	printf '[Service]\nWatchdogSec=3s\nRestartSec=1s\n' >"$dropin"
	systemctl daemon-reload
	systemctl restart aoetarget.service || die "restart with WatchdogSec=3s failed"
	wait_for 30 "export serving" export_serving || return 1
	sleep 4 # the keep-alives arrive: no watchdog timeout while it runs
	[ "$(systemctl show -P NRestarts aoetarget.service)" = 0 ] || die "restarted although it was not frozen"
	pid=$(systemctl show -P MainPID aoetarget.service)
	restarts=$(systemctl show -P NRestarts aoetarget.service)
	t0=$(now)
	kill -STOP "$pid"
	wait_for 40 "watchdog restart" watchdog_restarted "$pid" "$restarts" || { journalctl -u aoetarget.service --no-pager -n 20; return 1; }
	echo "watchdog: pid $pid frozen, killed and restarted after $(since "$t0")s as pid $(systemctl show -P MainPID aoetarget.service) (NRestarts $restarts -> $(systemctl show -P NRestarts aoetarget.service))"
	journalctl -u aoetarget.service --no-pager -o cat | grep -m1 -i 'watchdog timeout' || die "no watchdog timeout in the journal"
	wait_for 30 "export serving after the restart" export_serving || return 1
	rm -f "$dropin"
	systemctl daemon-reload
	systemctl restart aoetarget.service || die "restart without the drop-in failed"
	wait_for 30 "export serving" export_serving || return 1
	echo "drop-in removed, restarted with WatchdogSec=$(systemctl show -P WatchdogUSec aoetarget.service), export serving"
}
watchdog_restarted() {
	local now
	now=$(systemctl show -P MainPID aoetarget.service)
	[ "$(systemctl show -P NRestarts aoetarget.service)" -gt "$2" ] && [ "$now" != 0 ] && [ "$now" != "$1" ] &&
		[ "$(systemctl is-active aoetarget.service)" = active ]
}

# target_stop: stop exporting (systemctl stop aoetarget).
target_stop() {
	local t0
	t0=$(now)
	systemctl stop aoetarget.service || die "systemctl stop aoetarget.service failed"
	echo "aoetarget.service stopped in $(since "$t0")s ($(systemctl show -P Result aoetarget.service), status $(systemctl show -P ExecMainStatus aoetarget.service))"
}

# ---------------------------------------------------------------------------
# the master: aoe initiator, md RAID1

# aoe_discover DEV...: load the aoe driver on eth0, wait for the disks.
aoe_discover() {
	local d t0
	t0=$(now)
	modprobe aoe aoe_iflist=eth0 || die "modprobe aoe failed"
	for d in "$@"; do
		wait_for 30 "/dev/etherd/$d" aoe_up "$d" || {
			[ -e /dev/etherd/discover ] && echo >/dev/etherd/discover
			wait_for 30 "/dev/etherd/$d" aoe_up "$d" || return 1
		}
	done
	for d in "$@"; do
		echo "$d up after $(since "$t0")s: $(($(blockdev --getsize64 "/dev/etherd/$d") / 1048576)) MiB, payload $(cat "/sys/block/etherd!$d/payload" 2>/dev/null || echo '?') bytes"
	done
}
aoe_up() { [ -b "/dev/etherd/$1" ] && grep -q '^up' "/sys/block/etherd!$1/state" 2>/dev/null; }

# md_create LOCAL AOEDEV...: md RAID1 over the local disk and the AoE disks.
# The disks are new sparse files (all zeros), so the mirrors are identical
# already: --assume-clean skips the initial resync. The AoE legs are
# write-mostly (reads are served by the local disk); no write-behind (a
# write completes only when every leg has it). Assembled again without a
# bad block log (see hack/README.md, the lab's notes).
md_create() {
	local local=$1 t0 d
	shift
	local legs=()
	for d in "$@"; do legs+=("/dev/etherd/$d"); done
	t0=$(now)
	mdadm --create "$HA_DEV" --run --level=1 --raid-devices=$((1 + $#)) --metadata=1.2 \
		--bitmap=internal --bitmap-chunk=1M --assume-clean --name=ha \
		"$local" --write-mostly "${legs[@]}" 2>&1 || die "mdadm --create failed"
	mdadm --stop "$HA_DEV" 2>&1 || die "mdadm --stop failed"
	mdadm --assemble "$HA_DEV" --update=no-bbl "$local" "${legs[@]}" 2>&1 || die "mdadm --assemble failed"
	echo "md0 in $(since "$t0")s: $(md_state)"
}
md_state() { awk '$1 == "md0" { $1 = ""; $2 = ""; printf "%s", $0; getline; print " " $0 }' /proc/mdstat | sed 's/^ *//; s/  */ /g'; }

# fs_create DEV: ext4 on DEV, mounted on /srv/ha, with the export and the
# NFS state directory (a copy of this server's empty /var/lib/nfs).
fs_create() {
	local dev=$1 t0
	t0=$(now)
	# 8192 inodes (2 MiB of inode tables instead of 16), written now rather
	# than by ext4's lazy init in the background.
	mkfs.ext4 -q -F -L fo-ha -N 8192 -E lazy_itable_init=0,lazy_journal_init=0 "$dev" || die "mkfs.ext4 $dev failed"
	mkdir -p "$HA_MNT"
	mount -t ext4 "$dev" "$HA_MNT" || die "mount $dev failed"
	mkdir -p "$EXPORT"
	chmod 1777 "$EXPORT"
	cp -a /var/lib/nfs "$STATE"
	sync
	echo "ext4 on $dev mounted on $HA_MNT in $(since "$t0")s ($(df -h --output=size "$HA_MNT" | tail -n 1 | tr -d ' '))"
}

# nfs_prepare: what a server (and a standby) can start before it has the
# replicated filesystem: the NFS kernel modules, rpcbind, the nfsd and
# rpc_pipefs file systems. The rest (mountd, statd, nfsdcld, nfsd) keeps
# state in /var/lib/nfs, which is on the replicated filesystem, and idmapd
# and mountd are bound to nfs-server.service: nfs_serve starts them.
nfs_prepare() {
	local t0
	t0=$(now)
	modprobe nfsd || die "modprobe nfsd failed"
	systemctl start rpcbind.socket rpcbind.service proc-fs-nfsd.mount rpc_pipefs.target || die "systemctl start failed"
	systemctl is-active -q nfs-server.service && die "nfs-server.service started too early"
	echo "$FO_NAME: nfsd module, rpcbind ready in $(since "$t0")s"
}

# nfs_serve: export $EXPORT over NFS (v3 and v4.x) with fsid=$FSID, the
# NFS state on the replicated filesystem, and take the service IP.
# Grace and lease time 10 s (the default 90 s would hold NFSv4 clients that
# long after a failover).
nfs_serve() {
	local t0
	t0=$(now)
	mountpoint -q /var/lib/nfs || mount --bind "$STATE" /var/lib/nfs || die "bind mount of $STATE failed"
	cat >/etc/exports <<EOF
$EXPORT *(rw,sync,no_subtree_check,no_root_squash,fsid=$FSID)
EOF
	cat >/etc/nfs.conf.d/failover.conf <<EOF
[nfsd]
threads=8
grace-time=10
lease-time=10
vers3=y
vers4.0=y
vers4.1=y
vers4.2=y
EOF
	systemctl start nfs-server.service || {
		journalctl -u nfs-server -u nfs-mountd --no-pager -n 20
		die "systemctl start nfs-server failed"
	}
	local t1
	t1=$(since "$t0")
	exportfs -s | grep -q "^$EXPORT " || die "$EXPORT is not exported: $(exportfs -v)"
	ip addr add "$FO_SIP/24" dev eth0 || die "ip addr add $FO_SIP failed"
	# Gratuitous ARP: the client's neighbour entry moves to this MAC now,
	# not when it expires.
	arping -q -U -c 2 -w 1 -I eth0 "$FO_SIP" >/dev/null 2>&1 || true
	echo "NFS server up in ${t1}s, service IP $FO_SIP on $(cat /sys/class/net/eth0/address) at $(since "$t0")s; exports: $(exportfs -v | tr -s ' \t\n' ' ')"
}

# nfs_stop: release the service IP, stop the NFS server, unmount.
# (nfsdcld and rpc.statd keep files of /var/lib/nfs open: stop them too.)
nfs_stop() {
	ip addr del "$FO_SIP/24" dev eth0 2>/dev/null
	systemctl stop nfs-server.service nfs-mountd.service nfsdcld.service nfs-idmapd.service \
		rpc-statd.service rpc-statd-notify.service
	if mountpoint -q /var/lib/nfs; then
		umount /var/lib/nfs || die "umount /var/lib/nfs failed: $(fuser -vm /var/lib/nfs 2>&1 | tr -s ' \n' ' ')"
	fi
	if mountpoint -q "$HA_MNT"; then umount "$HA_MNT" || die "umount $HA_MNT failed"; fi
	if [ -e "$HA_DEV" ]; then mdadm --stop "$HA_DEV" || die "mdadm --stop failed"; fi
	echo "NFS service stopped, $HA_MNT unmounted${HA_DEV:+, $HA_DEV stopped}"
}

# takeover_md DISK: what a replica does when the master is gone: stop
# exporting DISK over AoE, assemble the mirror from DISK alone (degraded),
# mount it (ext4 replays its journal), serve NFS, take the service IP.
takeover_md() {
	local disk=$1 t0
	t0=$(now)
	systemctl stop aoetarget.service || die "systemctl stop aoetarget.service failed"
	echo "T stop-aoetarget $(since "$t0")"
	mdadm --assemble "$HA_DEV" --run "$disk" 2>&1 || die "mdadm --assemble --run $disk failed"
	echo "T md-assemble $(since "$t0")"
	echo "md0: $(md_state)"
	mkdir -p "$HA_MNT"
	mount -t ext4 "$HA_DEV" "$HA_MNT" || die "mount $HA_DEV failed"
	echo "T mount $(since "$t0")"
	dmesg | grep -E 'EXT4-fs \(md0\)' | tail -n 3 | sed 's/^\[[ 0-9.]*\] //'
	nfs_serve
	echo "T nfs-serve $(since "$t0")"
}

# md_readd DEV...: fail back: load the aoe driver, find the AoE disks DEV
# (the old master's and the other replica's), re-add them to md0; md copies
# only the chunks its write-intent bitmap marks dirty. Waits for the end of
# the recovery.
md_readd() {
	local d t0 dirty
	dirty=$(mdadm -X "$(md_members | head -n 1)" 2>/dev/null | awk -F'[:,]' '/Bitmap :/ { print $2 "," $3 }' | sed 's/^ *//')
	echo "bitmap of md0 before the re-add: $dirty"
	aoe_discover "$@" || return 1
	t0=$(now)
	for d in "$@"; do
		mdadm "$HA_DEV" --re-add "/dev/etherd/$d" 2>&1 || die "mdadm --re-add /dev/etherd/$d failed"
	done
	wait_for 600 "end of the recovery" md_clean || { cat /proc/mdstat; return 1; }
	echo "T resync $(since "$t0")"
	echo "md0 after $(since "$t0")s: $(md_state)"
	dmesg | grep -E 'md: (recovery|md0)|md/raid1' | tail -n 4 | sed 's/^\[[ 0-9.]*\] //'
}
md_members() { for l in /sys/block/md0/md/dev-*/block; do echo "/dev/$(basename "$(readlink -f "$l")" | sed 's/!/\//')"; done; }
md_clean() {
	[ "$(cat /sys/block/md0/md/sync_action)" = idle ] && [ "$(cat /sys/block/md0/md/degraded)" = 0 ]
}

# ha_freeze: flush and freeze the filesystem on md0 (for the host to compare
# the legs); prints "LEG <device> <data offset in sectors>" and "SIZE <KiB>".
ha_freeze() {
	sync
	fsfreeze -f "$HA_MNT" || die "fsfreeze failed"
	local d
	for d in /sys/block/md0/md/dev-*; do
		echo "LEG $(basename "$(readlink -f "$d/block")" | sed 's/!/\//') $(cat "$d/offset")"
	done
	echo "SIZE $(cat /sys/block/md0/md/component_size)"
}
ha_thaw() { fsfreeze -u "$HA_MNT"; }

# ---------------------------------------------------------------------------
# the rsync counter-experiment

# wipe DEV: erase the signatures on DEV (the md superblock of the mirror).
wipe() { wipefs -a -q "$1" || die "wipefs $1 failed"; }

# rsync_standby DEV: a standby with a filesystem of its own on DEV, which
# an rsync daemon fills with copies of the server's files.
rsync_standby() {
	local dev=$1
	mkfs.ext4 -q -F -L fo-ha -N 8192 -E lazy_itable_init=0,lazy_journal_init=0 "$dev" || die "mkfs.ext4 $dev failed"
	mkdir -p "$HA_MNT"
	mount -t ext4 "$dev" "$HA_MNT" || die "mount $dev failed"
	cat >/etc/rsyncd.conf <<EOF
pid file = /run/rsyncd.pid
[ha]
path = $HA_MNT
read only = no
uid = 0
gid = 0
use chroot = yes
EOF
	rsync --daemon --config=/etc/rsyncd.conf || die "rsync --daemon failed"
	echo "standby: ext4 on $dev, rsync daemon on port 873 (module ha = $HA_MNT)"
}

# rsync_loop_start STANDBY_IP: copy the filesystem to the standby with
# rsync every second, in the background (the best an rsync replica can do).
rsync_loop_start() {
	local ip=$1
	setsid bash -c '
		while :; do
			t=$(date +%s.%N)
			if rsync -aHAX --delete --numeric-ids "$1/" "rsync://$2/ha/" 2>>/run/fo/rsync.err; then
				echo "ok $t $(date +%s.%N)" >>/run/fo/rsync.log
			else
				echo "fail $t $(date +%s.%N)" >>/run/fo/rsync.log
			fi
			sleep 1
		done' rsync-loop "$HA_MNT" "$ip" </dev/null >/dev/null 2>&1 &
	echo $! >/run/fo/rsync.pid
	wait_for 60 "first rsync" grep -q '^ok' /run/fo/rsync.log 2>/dev/null || return 1
	echo "rsync to $ip every second: first copy done"
}

rsync_status() {
	awk -v now="$(date +%s.%N)" '$1 == "ok" { ok++; took = $3 - $2; end = $3 } $1 == "fail" { failed++ }
		END { printf "rsync copies: %d done (the last took %.1fs, ended %.1fs ago), %d failed\n", ok, took, now - end, failed }' /run/fo/rsync.log
}

# takeover_rsync: the standby takes over with its rsync copy.
takeover_rsync() {
	local t0
	t0=$(now)
	[ -s /run/rsyncd.pid ] && kill "$(cat /run/rsyncd.pid)"
	echo "T stop-rsyncd $(since "$t0")"
	nfs_serve
	echo "T nfs-serve $(since "$t0")"
}

# ---------------------------------------------------------------------------
# the client

# nfs_mount OPTS: mount the service's export twice: NFSv3 on /mnt/v3 and
# NFSv4.2 on /mnt/v4, hard mounts over TCP. timeo=20: after 2 s without an
# answer the client retransmits (over a new connection if the old one is
# gone), instead of the default 60 s.
nfs_mount() {
	local opts="hard,proto=tcp,timeo=${1:-20},retrans=3" t0
	t0=$(now)
	mkdir -p "$CLIENT_MOUNTS/v3" "$CLIENT_MOUNTS/v4"
	mount -t nfs -o "vers=3,nolock,$opts" "$FO_SIP:$EXPORT" "$CLIENT_MOUNTS/v3" || die "NFSv3 mount failed"
	mount -t nfs -o "vers=4.2,$opts" "$FO_SIP:$EXPORT" "$CLIENT_MOUNTS/v4" || die "NFSv4.2 mount failed"
	echo "mounted in $(since "$t0")s:"
	grep " $CLIENT_MOUNTS/v[34] " /proc/mounts | awk '{ print "  " $2 " " $3 " " $4 }'
}

nfs_umount() {
	umount "$CLIENT_MOUNTS/v3" "$CLIENT_MOUNTS/v4" || umount -f "$CLIENT_MOUNTS/v3" "$CLIENT_MOUNTS/v4" || die "umount failed"
	echo "unmounted"
}

# workload_start [ARGS...]: start fo-client on both mounts in the background.
workload_start() {
	rm -f /run/fo/client.status /run/fo/client.out /run/fo/client.err
	setsid /opt/failover/fo-client -mount "v3=$CLIENT_MOUNTS/v3" -mount "v4=$CLIENT_MOUNTS/v4" \
		-status /run/fo/client.status "$@" </dev/null >/run/fo/client.out 2>/run/fo/client.err &
	echo $! >/run/fo/client.pid
	wait_for 60 "workload status" test -s /run/fo/client.status || { cat /run/fo/client.err; return 1; }
	echo "fo-client running (pid $(cat /run/fo/client.pid))"
}

# workload_status: one line: t= ops= acked= errors= estale= last_ok=, and
# the guest's clock (its time line is not the host's).
workload_status() {
	kill -0 "$(cat /run/fo/client.pid)" 2>/dev/null || { echo "fo-client exited"; cat /run/fo/client.err; return 1; }
	sed "s/^/STATUS /" /run/fo/client.status
}

# workload_stop: SIGUSR1: fo-client stops, verifies every acknowledged
# record and prints its report.
workload_stop() {
	local pid
	pid=$(cat /run/fo/client.pid)
	kill -USR1 "$pid"
	wait_for 300 "fo-client exit" bash -c "! kill -0 $pid 2>/dev/null" || return 1
	cat /run/fo/client.out
	sed 's/^/LOG /' /run/fo/client.err
}

# kmsg PATTERN: kernel messages matching the extended regexp.
kmsg() { dmesg | grep -E "$1" | tail -n "${2:-20}"; }
