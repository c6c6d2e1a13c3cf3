# Helpers shared by the lab VMs' step libraries (sourced by /init, busybox ash).
# Every function is a command the host can send over the control channel;
# it prints what it did and returns non-zero on failure.
# AOET_name, AOET_role, AOET_mtu, AOET_stall come from /init.
# shellcheck disable=SC2154

# now prints the seconds since boot (centisecond resolution).
now() { cut -d' ' -f1 /proc/uptime; }

# since T0 prints the seconds elapsed since T0 (a value of now).
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# die prints an error and exits the step's subshell with status 1.
die() {
	echo "ERROR: $*"
	exit 1
}

# wait_for SECONDS WHAT COMMAND...: run COMMAND every 0.5 s until it succeeds;
# print a message and fail after SECONDS.
wait_for() {
	_wf_limit=$1 _wf_what=$2
	shift 2
	_wf_t0=$(now)
	while ! "$@"; do
		if awk -v a="$_wf_t0" -v b="$(now)" -v l="$_wf_limit" 'BEGIN { exit !(b - a > l) }'; then
			echo "timeout: no $_wf_what after ${_wf_limit}s"
			return 1
		fi
		sleep 0.5
	done
}

# proc_gone PID: PID has exited (or is a zombie not yet reaped).
proc_gone() { [ ! -e "/proc/$1" ] || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# hello answers the host's first command (proves the control channel works).
hello() { echo "$AOET_name up $(now)s, kernel $(uname -r), mtu $(cat /sys/class/net/eth0/mtu), mac $(cat /sys/class/net/eth0/address)"; }

# kmsg PATTERN prints the kernel messages matching the extended regexp PATTERN.
kmsg() { dmesg | grep -E "$1" || true; }

# stuck prints the processes in uninterruptible sleep with their kernel stacks
# (what a stalled AoE write looks like).
stuck() {
	for s in /proc/[0-9]*/status; do
		p=${s%/status}
		p=${p#/proc/}
		grep -q '^State:.*D' "$s" 2>/dev/null || continue
		echo "pid $p ($(cat /proc/$p/comm)) blocked in:"
		sed 's/^/    /' /proc/$p/stack 2>/dev/null
	done
	for f in /sys/kernel/debug/aoe/*; do
		[ -e "$f" ] || continue
		echo "debugfs ${f##*/}:"
		sed 's/^/    /' "$f"
	done
}
