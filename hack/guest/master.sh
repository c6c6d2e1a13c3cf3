# Steps of the master VM: the Linux aoe initiator and md RAID1 over the AoE
# disks. Each function is called by hack/lab over the control channel.
# AoE disks are named like the driver names them: e1.0 is /dev/etherd/e1.0.

MD=/dev/md0
MDSYS=/sys/block/md0/md
DS=/tmp/ds # data set records: $DS.NAME holds "chunk sha256" lines (1 MiB chunks of md0)
export MDADM_NO_UDEV=1

# blk DEV prints the sysfs directory of an AoE disk.
blk() { echo "/sys/block/etherd!$1"; }

# aoe_up DEV...: true if every DEV is up and has its device node.
aoe_up() {
	for _d; do
		case "$(cat "$(blk "$_d")/state" 2>/dev/null)" in
		up*) ;;
		*) return 1 ;;
		esac
		[ -b "/dev/etherd/$_d" ] || return 1
	done
}

# aoe_info DEV... prints what the driver knows about each AoE disk.
aoe_info() {
	for _d; do
		_b=$(blk "$_d")
		if [ ! -d "$_b" ]; then
			echo "$_d: not discovered"
			continue
		fi
		echo "$_d: state=$(cat "$_b/state") mac=$(cat "$_b/mac") netif=$(cat "$_b/netif")" \
			"firmware-version=$(cat "$_b/firmware-version") payload=$(cat "$_b/payload")" \
			"size=$(($(cat "$_b/size") / 2048))MiB"
	done
}

# aoe_load DEADSECS DEV...: load the aoe driver (it broadcasts a Query Config)
# with aoe_deadsecs=DEADSECS on eth0 only, and wait until every DEV is up.
aoe_load() {
	_ds=$1
	shift
	_t0=$(now)
	insmod /lib/modules/aoe.ko aoe_deadsecs="$_ds" aoe_iflist=eth0 || die "insmod aoe.ko failed"
	_n=0
	while ! aoe_up "$@"; do
		_n=$((_n + 1))
		if [ $_n -gt 60 ]; then
			aoe_info "$@"
			die "AoE targets $* not up after 30 s"
		fi
		# ask again every 3 s, as aoe-discover does
		[ $((_n % 6)) -eq 0 ] && echo >/dev/etherd/discover
		sleep 0.5
	done
	echo "aoe driver loaded (aoe_deadsecs=$(cat /sys/module/aoe/parameters/aoe_deadsecs)), $* up after $(since "$_t0")s"
	aoe_info "$@"
}

# aoe_set_deadsecs N: change aoe_deadsecs of the loaded driver (it is read at
# every retransmit timer tick).
aoe_set_deadsecs() {
	echo "$1" >/sys/module/aoe/parameters/aoe_deadsecs || die "cannot set aoe_deadsecs"
	echo "aoe_deadsecs=$(cat /sys/module/aoe/parameters/aoe_deadsecs)"
}

# payload_check BYTES DEV...: the payload size the driver chose for each DEV.
payload_check() {
	_want=$1
	shift
	_rc=0
	for _d; do
		_p=$(cat "$(blk "$_d")/payload")
		echo "$_d: $_p byte data frames (expected $_want)"
		[ "$_p" = "$_want" ] || _rc=1
	done
	return $_rc
}

# raw_pattern OFFSET_MIB MIB DEV...: write MIB MiB of random data at OFFSET_MIB
# on each raw AoE disk (O_DIRECT), read it back (O_DIRECT) and compare.
# Prints "SHA DEV OFFSET_MIB MIB SHA256" for the host to check the images.
raw_pattern() {
	_off=$1 _mib=$2
	shift 2
	for _d; do
		dd if=/dev/urandom of=/tmp/pattern bs=1M count="$_mib" 2>/dev/null
		_want=$(sha256sum </tmp/pattern | cut -d' ' -f1)
		_t0=$(now)
		dd if=/tmp/pattern of="/dev/etherd/$_d" bs=1M seek="$_off" oflag=direct conv=notrunc 2>/tmp/dd.err ||
			die "write to $_d failed: $(cat /tmp/dd.err)"
		_tw=$(since "$_t0")
		_t0=$(now)
		_got=$(dd if="/dev/etherd/$_d" bs=1M skip="$_off" count="$_mib" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
		_tr=$(since "$_t0")
		[ "$_got" = "$_want" ] || die "$_d: read back sha256 $_got, wrote $_want"
		echo "$_d: wrote $_mib MiB at $_off MiB in ${_tw}s, read back in ${_tr}s, sha256 matches"
		echo "SHA $_d $_off $_mib $_want"
	done
}

# md_idle: no resync/recovery/check running or pending on md0.
md_idle() {
	[ "$(cat $MDSYS/sync_action)" = idle ] || return 1
	! grep -q -E 'resync|recovery|check|PENDING|DELAYED' /proc/mdstat
}

# md_insync: the initial resync is complete (resync_start is "none") and idle.
md_insync() { [ "$(cat $MDSYS/resync_start)" = none ] && md_idle; }

# md_synced: idle and not degraded (a recovery has finished).
md_synced() { md_idle && [ "$(cat $MDSYS/degraded)" = 0 ]; }

# md_show prints the state of md0 and of its members.
md_show() {
	sed -n '/^md0/,/^$/p' /proc/mdstat | sed '/^$/d'
	for _f in $MDSYS/dev-*; do
		echo "member ${_f##*/dev-}: state=$(cat "$_f/state") errors=$(cat "$_f/errors")"
	done
	echo "degraded=$(cat $MDSYS/degraded) sync_action=$(cat $MDSYS/sync_action) array_state=$(cat $MDSYS/array_state)"
}

# md_create BITMAP_CHUNK_KIB DEV...: create md0, RAID1 over the AoE disks with
# an internal write-intent bitmap, and wait for the initial resync.
md_create() {
	_chunk=$1
	shift
	echo 100000 >/proc/sys/dev/raid/speed_limit_min
	echo 500000 >/proc/sys/dev/raid/speed_limit_max
	mkdir -p /run/mdadm
	_devs=
	for _d; do _devs="$_devs /dev/etherd/$_d"; done
	_t0=$(now)
	mdadm --create $MD --run --level=1 --raid-devices=$# --metadata=1.2 \
		--bitmap=internal --bitmap-chunk="$_chunk" $_devs 2>&1 || die "mdadm --create failed"
	wait_for 600 "end of the initial resync" md_insync || {
		md_show
		die "resync did not finish"
	}
	echo "md0 created and resynced in $(since "$_t0")s"
	# No bad block log (mdadm makes one by default for 1.x metadata): with
	# one, md keeps a leg whose writes fail in the array as [UU], records the
	# sectors as bad blocks, and a --re-add does not rewrite them. Without,
	# md fails the leg at its first write error (fault 3).
	mdadm --stop $MD 2>&1 || die "mdadm --stop failed"
	mdadm --assemble $MD --update=no-bbl $_devs 2>&1 || die "mdadm --assemble --update=no-bbl failed"
	for _d; do
		mdadm --examine-badblocks "/dev/etherd/$_d" 2>&1 | grep -q 'No bad-blocks list' ||
			die "$_d still has a bad block log: $(mdadm --examine-badblocks "/dev/etherd/$_d" 2>&1)"
	done
	echo "bad block logs removed (mdadm --assemble --update=no-bbl)"
	md_show
	[ "$(cat $MDSYS/degraded)" = 0 ] || die "md0 is degraded"
	md_insync || die "md0 not in sync after --assemble"
}

# md_layout prints "LAYOUT DEV DATA_OFFSET_SECTORS COMPONENT_SIZE_KIB" per
# member, for the host to compare the mirrored bytes in the images.
md_layout() {
	for _f in $MDSYS/dev-*; do
		_n=${_f##*/dev-}
		echo "LAYOUT ${_n#etherd!} $(cat "$_f/offset") $(cat $MDSYS/component_size)"
	done
}

# ds_write NAME FIRST COUNT: write COUNT chunks of 1 MiB random data to md0
# at chunk FIRST.. (O_DIRECT) and record their checksums as data set NAME.
ds_write() {
	_name=$1 _first=$2 _count=$3
	: >"$DS.$_name"
	_t0=$(now)
	_i=0
	while [ $_i -lt "$_count" ]; do
		_c=$((_first + _i))
		dd if=/dev/urandom of=/tmp/chunk bs=1M count=1 2>/dev/null
		dd if=/tmp/chunk of=$MD bs=1M seek=$_c oflag=direct conv=notrunc 2>/tmp/dd.err ||
			die "write of chunk $_c failed: $(cat /tmp/dd.err)"
		echo "$_c $(sha256sum </tmp/chunk | cut -d' ' -f1)" >>"$DS.$_name"
		_i=$((_i + 1))
	done
	echo "data set $_name: $_count MiB written to md0 at MiB $_first in $(since "$_t0")s"
}

# ds_verify NAME...: read back every chunk of the data sets from md0 (O_DIRECT,
# latest checksum of each chunk wins) and compare.
ds_verify() {
	_t0=$(now)
	_n=0
	_bad=0
	for _name; do
		[ -s "$DS.$_name" ] || die "no data set $_name"
	done
	for _name; do cat "$DS.$_name"; done | awk '{ s[$1] = $2 } END { for (c in s) print c, s[c] }' >/tmp/verify
	while read -r _c _want; do
		_got=$(dd if=$MD bs=1M skip="$_c" count=1 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
		_n=$((_n + 1))
		if [ "$_got" != "$_want" ]; then
			echo "chunk $_c: sha256 $_got, expected $_want"
			_bad=$((_bad + 1))
		fi
	done </tmp/verify
	echo "data sets $*: $_n chunks of 1 MiB read back from md0 in $(since "$_t0")s, $_bad bad"
	[ $_bad = 0 ]
}

# writer_start NAME FIRST COUNT: start a background writer that rewrites the
# COUNT chunks at FIRST.. of md0 in a loop (recording data set NAME) until
# writer_stop; return once it has written its first chunk.
writer_start() {
	_name=$1 _first=$2 _count=$3
	rm -f /tmp/writer.stop /tmp/writer.rc
	: >"$DS.$_name"
	: >/tmp/writer.times
	(
		_i=0
		while [ ! -e /tmp/writer.stop ]; do
			_c=$((_first + _i % _count))
			dd if=/dev/urandom of=/tmp/wchunk bs=1M count=1 2>/dev/null
			if ! dd if=/tmp/wchunk of=$MD bs=1M seek=$_c oflag=direct conv=notrunc 2>>/tmp/writer.log; then
				echo "write of chunk $_c failed" >>/tmp/writer.log
				echo 1 >/tmp/writer.rc
				exit 1
			fi
			echo "$_c $(sha256sum </tmp/wchunk | cut -d' ' -f1)" >>"$DS.$_name"
			now >>/tmp/writer.times
			_i=$((_i + 1))
		done
		echo 0 >/tmp/writer.rc
	) </dev/null >>/tmp/writer.log 2>&1 &
	echo $! >/tmp/writer.pid
	wait_for 60 "first chunk from the writer" test -s /tmp/writer.times || {
		stuck
		die "writer made no progress"
	}
	echo "writer (pid $(cat /tmp/writer.pid)) is rewriting chunks $_first..$((_first + _count - 1)) of md0"
}

writer_count() { wc -l </tmp/writer.times; }
writer_reached() { [ "$(writer_count)" -ge "$1" ] || [ -e /tmp/writer.rc ]; }

# writer_wait N SECONDS: wait until the writer has written N more chunks.
writer_wait() {
	_want=$(($(writer_count) + $1))
	wait_for "$2" "$1 more chunks from the writer" writer_reached $_want || {
		stuck
		die "writer stalled"
	}
	[ ! -e /tmp/writer.rc ] || {
		cat /tmp/writer.log
		die "writer failed"
	}
	echo "writer has written $(writer_count) chunks"
}

# writer_stop SECONDS: stop the writer and report its longest stall.
writer_stop() {
	touch /tmp/writer.stop
	wait_for "$1" "end of the writer" test -e /tmp/writer.rc || {
		stuck
		die "writer blocked"
	}
	_gap=$(awk 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1 } END { printf "%.1f", m }' /tmp/writer.times)
	echo "writer: $(writer_count) chunks written, longest gap between two chunks ${_gap}s"
	echo "GAP $_gap"
	[ "$(cat /tmp/writer.rc)" = 0 ] || {
		cat /tmp/writer.log
		die "writer failed"
	}
}

# md_faulty DEV: md has failed DEV and runs degraded.
md_faulty() {
	grep -q faulty "$MDSYS/dev-etherd!$1/state" 2>/dev/null && [ "$(cat $MDSYS/degraded)" -ge 1 ]
}

# md_wait_faulty SECONDS DEV: wait until md fails DEV (after aoe_deadsecs).
md_wait_faulty() {
	_t0=$(now)
	wait_for "$1" "failure of $2 in md0" md_faulty "$2" || {
		md_show
		aoe_info "$2"
		stuck
		return 1
	}
	echo "md0 failed $2 after $(since "$_t0")s"
	md_show
	aoe_info "$2"
}

# md_mark remembers how many member failures the kernel has logged so far.
md_mark() {
	dmesg | grep -c 'md/raid1:md0: Disk failure' >/tmp/md.failures
	echo "md0 member failures so far: $(cat /tmp/md.failures)"
}

# md_clean DEV...: md0 is not degraded, every DEV is in sync, and no member
# failure was logged since md_mark.
md_clean() {
	md_show
	_rc=0
	[ "$(cat $MDSYS/degraded)" = 0 ] || {
		echo "md0 is degraded"
		_rc=1
	}
	for _d; do
		_s=$(cat "$MDSYS/dev-etherd!$_d/state" 2>/dev/null)
		[ "$_s" = in_sync ] || {
			echo "$_d: state '$_s', not in_sync"
			_rc=1
		}
	done
	_f=$(dmesg | grep -c 'md/raid1:md0: Disk failure')
	[ "$_f" = "$(cat /tmp/md.failures)" ] || {
		echo "md0 logged a member failure:"
		dmesg | grep 'md/raid1:md0: Disk failure' | tail -n 3
		_rc=1
	}
	if [ $_rc != 0 ]; then
		aoe_info "$@"
		echo "aoe_deadsecs=$(cat /sys/module/aoe/parameters/aoe_deadsecs); last kernel messages:"
		dmesg | tail -n 12
	fi
	return $_rc
}

# md_readd DEV SECONDS: remove the failed DEV from md0 (closing it lets the
# driver revalidate it), wait until it is up again, show the dirty bitmap
# chunks and re-add DEV; wait for the bitmap-based recovery.
md_readd() {
	_d=$1 _to=$2
	_t0=$(now)
	mdadm $MD --remove "/dev/etherd/$_d" 2>&1 || mdadm $MD --remove failed 2>&1 || die "mdadm --remove failed"
	wait_for 60 "$_d up again" aoe_up "$_d" || {
		aoe_info "$_d"
		die "$_d did not come back"
	}
	echo "$_d up again $(since "$_t0")s after its removal from md0"
	for _f in $MDSYS/dev-*; do
		_o=${_f##*/dev-etherd!}
		[ "$_o" = "$_d" ] && continue
		mdadm -X "/dev/etherd/$_o" 2>&1 | grep -E 'Bitmap|Chunksize|Events' | sed 's/^ */bitmap: /'
		break
	done
	_t0=$(now)
	mdadm $MD --re-add "/dev/etherd/$_d" 2>&1 || die "mdadm --re-add failed"
	wait_for "$_to" "end of the recovery" md_synced || {
		md_show
		die "md0 still degraded after --re-add"
	}
	echo "re-added $_d, recovery finished in $(since "$_t0")s"
	md_show
	dmesg | grep -E 'md: (recovery|resync) of RAID array md0|md0: .*(recovery|resync) done|md: md0: recovery' | tail -n 2
}

# md_check SECONDS: let md compare the mirrors; mismatch_cnt must be 0.
checks_done() { dmesg | grep -c 'md: md0: data-check done'; }
checks_done_ge() { [ "$(checks_done)" -ge "$1" ] && md_idle; }

md_check() {
	_t0=$(now)
	_n=$(($(checks_done) + 1))
	echo check >$MDSYS/sync_action
	wait_for "$1" "end of the md check" checks_done_ge $_n || {
		md_show
		die "check did not finish"
	}
	_m=$(cat $MDSYS/mismatch_cnt)
	echo "md check of md0 finished in $(since "$_t0")s: mismatch_cnt=$_m"
	[ "$_m" = 0 ]
}

# aoe_errors prints the kernel messages a correct target makes impossible
# (and md failures); fails if there are any.
aoe_errors() {
	if dmesg | grep -E 'aoe: ata error|runt data size|too-large data size|error packet from|unexpected rsp|bad AoE|aoe: .*(unrecognized|unknown)'; then
		return 1
	fi
	echo "no AoE protocol errors in the kernel log"
}

# --- power cut (--replicas vm): a writer on a raw AoE disk whose replica VM
# loses power; the host checks the replica's image after every cut.

# pc_block SEQ LBA prints the 4 KiB block the power-cut writer writes for
# write number SEQ at sector LBA: eight 512-byte lines naming the write and
# each sector, so that a stale, torn or misplaced sector is recognised.
# hack/lab prints the same bytes on the host.
pc_block() {
	for _k in 0 1 2 3 4 5 6 7; do
		printf '%-511s\n' "aoet power cut: write $1, sector $(($2 + _k))"
	done
}

# pc_writer_start DEV FIRST COUNT: start a background writer that writes
# block SEQ (pc_block) at sector FIRST + 8 * SEQ of the raw AoE disk DEV,
# for SEQ = 0..COUNT-1, one write at a time with O_DIRECT (the aoe driver has
# no write cache: a completed write is a write the target acknowledged), and
# appends SEQ to /tmp/pc.acked after each completed write.
pc_writer_start() {
	_d=$1 _first=$2 _count=$3
	rm -f /tmp/pc.stop /tmp/pc.rc
	: >/tmp/pc.acked
	(
		_s=0
		while [ $_s -lt "$_count" ] && [ ! -e /tmp/pc.stop ]; do
			_l=$((_first + 8 * _s))
			pc_block $_s $_l >/tmp/pc.blk
			if ! dd if=/tmp/pc.blk of="/dev/etherd/$_d" bs=4096 seek=$((_l / 8)) oflag=direct conv=notrunc 2>>/tmp/pc.log; then
				echo "write $_s (sector $_l) failed" >>/tmp/pc.log
				echo 1 >/tmp/pc.rc
				exit 1
			fi
			echo $_s >>/tmp/pc.acked
			_s=$((_s + 1))
		done
		echo 0 >/tmp/pc.rc
	) </dev/null >>/tmp/pc.log 2>&1 &
	wait_for 60 "first write of the power-cut writer" test -s /tmp/pc.acked || {
		stuck
		die "power-cut writer made no progress"
	}
	echo "power-cut writer on $_d: 4 KiB blocks from sector $_first, at most $_count"
}

pc_count() { wc -l </tmp/pc.acked; }
pc_reached() { [ "$(pc_count)" -ge "$1" ] || [ -e /tmp/pc.rc ]; }

# pc_wait N SECONDS: wait until the writer has completed N more writes (or
# has written all its blocks).
pc_wait() {
	_want=$(($(pc_count) + $1))
	wait_for "$2" "$1 more writes from the power-cut writer" pc_reached $_want || {
		stuck
		die "power-cut writer stalled"
	}
	if [ "$(cat /tmp/pc.rc 2>/dev/null)" = 1 ]; then
		cat /tmp/pc.log
		die "power-cut writer failed"
	fi
	echo "power-cut writer: $(pc_count) writes completed"
}

# pc_acked DEV prints "ACKED N INFLIGHT M": the writes completed so far (the
# writer is sequential: writes 0..N-1) and DEV's requests in flight.
pc_acked() {
	echo "ACKED $(pc_count) INFLIGHT $(awk -v d="etherd/$1" '$3 == d { print $12 }' /proc/diskstats)"
}

# pc_stop SECONDS: stop the writer; prints "ACKED N".
pc_stop() {
	touch /tmp/pc.stop
	wait_for "$1" "end of the power-cut writer" test -e /tmp/pc.rc || {
		stuck
		die "power-cut writer blocked"
	}
	[ "$(cat /tmp/pc.rc)" = 0 ] || {
		cat /tmp/pc.log
		die "power-cut writer failed"
	}
	echo "ACKED $(pc_count)"
}

# --- disk failure: the replica's store fails writes (the host made its
# filesystem full); md must notice at once, not after aoe_deadsecs.

# md_badblocks DEV prints md's bad block list of member DEV (empty: none).
md_badblocks() { cat "$MDSYS/dev-etherd!$1/bad_blocks" 2>/dev/null; }

# md_noticed DEV: md has failed DEV, or recorded bad blocks on it.
md_noticed() { md_faulty "$1" || [ -n "$(md_badblocks "$1")" ]; }

# md_disk_fail DEV NAME FIRST COUNT SECONDS: write data set NAME (COUNT 1 MiB
# chunks at chunk FIRST of md0, a region whose writes fail on DEV) and watch
# how md reacts (every 0.1 s); prints "FAULTY T" (md failed DEV T seconds
# after the first write) or, if md only recorded bad blocks on DEV and kept it
# 3 s after the last write, "BADBLOCKS T" (first bad block after T seconds);
# then the state of md0, DEV's bad blocks and what the kernel logged.
md_disk_fail() {
	_d=$1 _name=$2 _first=$3 _count=$4 _to=$5
	rm -f /tmp/dsw.rc
	_e0=$(dmesg | grep -c 'aoe: ata error')
	_t0=$(now)
	(
		ds_write "$_name" "$_first" "$_count" >/tmp/dsw.out 2>&1
		echo $? >/tmp/dsw.rc
	) </dev/null &
	_tbb= _tf= _tdone=
	while :; do
		[ -n "$_tbb" ] || [ -z "$(md_badblocks "$_d")" ] || _tbb=$(since "$_t0")
		[ -n "$_tf" ] || ! md_faulty "$_d" || _tf=$(since "$_t0")
		if [ -e /tmp/dsw.rc ]; then
			[ -n "$_tf" ] && break
			[ -n "$_tdone" ] || _tdone=$(now)
			[ "$(since "$_tdone" | cut -d. -f1)" -lt 3 ] || break
		fi
		if [ "$(since "$_t0" | cut -d. -f1)" -ge "$_to" ]; then
			echo "timeout: writes of data set $_name not done after ${_to}s"
			md_show
			stuck
			return 1
		fi
		sleep 0.1
	done
	cat /tmp/dsw.out
	[ "$(cat /tmp/dsw.rc)" = 0 ] || die "writes to md0 failed"
	if [ -n "$_tf" ]; then
		echo "FAULTY $_tf"
	elif [ -n "$_tbb" ]; then
		echo "BADBLOCKS $_tbb"
	fi
	md_show
	_bb=$(md_badblocks "$_d" | tr '\n' ' ')
	echo "bad blocks recorded on $_d (sector count): ${_bb:-none}${_tbb:+ (first after ${_tbb}s)}"
	echo "kernel: $(($(dmesg | grep -c 'aoe: ata error') - _e0)) x 'aoe: ata error' (ring buffer permitting), then:"
	dmesg | grep -v 'aoe: ata error' | grep -E 'md/raid1:md0|md: |md0' | tail -n 3
	[ -n "$_tf$_tbb" ] || die "md0 neither failed $_d nor recorded bad blocks on it"
}
