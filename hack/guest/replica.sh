# Steps of a replica VM (--replicas vm): run the AoE target binary on eth0,
# exporting /dev/vda (a virtio disk backed by the replica's image file on the
# host). The target binary is /bin/aoet-target (aoetarget or vblade).

TARGET=/bin/aoet-target
TARGET_LOG=/tmp/target.log

# target_start SHELF SLOT [OPTIONS...]: start the target in the background.
# A wrapper subshell waits for it and logs its exit status.
target_start() {
	_shelf=$1 _slot=$2
	shift 2
	[ -b /dev/vda ] || die "no /dev/vda"
	echo "=== $(now)s: $TARGET $* $_shelf $_slot eth0 /dev/vda" >>"$TARGET_LOG"
	rm -f /tmp/target.pid
	(
		"$TARGET" "$@" "$_shelf" "$_slot" eth0 /dev/vda </dev/null >>"$TARGET_LOG" 2>&1 &
		echo $! >/tmp/target.pid
		wait $!
		echo "=== $(now)s: exit status $?" >>"$TARGET_LOG"
	) </dev/null >/dev/null 2>&1 &
	wait_for 10 "target pid" test -s /tmp/target.pid || die "target did not start"
	sleep 0.5
	if proc_gone "$(cat /tmp/target.pid)"; then
		cat "$TARGET_LOG"
		die "target exited right after start"
	fi
	echo "target e$_shelf.$_slot running, pid $(cat /tmp/target.pid)"
}

exits() { grep -c '^=== .*: exit status' "$TARGET_LOG"; }
exits_ge() { [ "$(exits)" -ge "$1" ]; }

# target_stop SIGNAL: send SIGNAL (KILL, TERM) to the target, wait until it is
# gone and print its exit status ("STATUS N").
target_stop() {
	_pid=$(cat /tmp/target.pid)
	_n=$(($(exits) + 1))
	kill -"$1" "$_pid" || die "kill -$1 $_pid failed"
	wait_for 20 "exit of target pid $_pid" proc_gone "$_pid" || die "target still running 20 s after SIG$1"
	wait_for 10 "exit status of target pid $_pid" exits_ge $_n || die "no exit status"
	_st=$(grep '^=== .*: exit status' "$TARGET_LOG" | tail -n 1 | sed 's/.*exit status //')
	echo "target pid $_pid stopped by SIG$1, exit status $_st"
	echo "STATUS $_st"
}

# target_running: fail if the target has exited.
target_running() {
	_pid=$(cat /tmp/target.pid)
	if proc_gone "$_pid"; then
		tail -n 20 "$TARGET_LOG"
		die "target pid $_pid has exited"
	fi
	echo "target pid $_pid running"
}

# target_log prints the target's stderr/stdout (all runs).
target_log() { cat "$TARGET_LOG"; }

# disk_sync flushes the guest's caches to the image file on the host.
disk_sync() {
	sync
	blockdev --flushbufs /dev/vda
	echo "flushed /dev/vda"
}
