package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// parseProcStat returns the command name and the user plus system CPU
// time, in clock ticks, of a /proc/PID/stat line. The name is in
// parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the last ')'.
func parseProcStat(b []byte) (comm string, ticks uint64, err error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("no command name in %q", b)
	}
	comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return comm, 0, fmt.Errorf("%d fields after the command name, need 13", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return comm, 0, fmt.Errorf("utime %q or stime %q is not a number", f[11], f[12])
	}
	return comm, u + s, nil
}

// procCPU returns the CPU time in seconds that process pid (all its
// threads) has used so far.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	_, t, err := parseProcStat(b)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(t) / clockTicks, nil
}

// procSnapshot is the CPU time of every process at one moment, by pid.
type procSnapshot map[int]procTime

type procTime struct {
	comm  string
	ticks uint64
}

// snapshotProcs reads /proc/*/stat, leaving out the pids in skip.
func snapshotProcs(skip ...int) procSnapshot {
	s := procSnapshot{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return s
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		skipped := false
		for _, k := range skip {
			skipped = skipped || k == pid
		}
		if skipped {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		if comm, t, err := parseProcStat(b); err == nil {
			s[pid] = procTime{comm, t}
		}
	}
	return s
}

// otherCPU is the CPU time other processes used between two snapshots.
type otherCPU struct {
	Seconds float64 // all of them
	Top     string  // the busiest, "name seconds, ..."
}

// diffProcs returns the CPU time used between before and after by the
// processes in after (a process started in between counts from zero).
func diffProcs(before, after procSnapshot) otherCPU {
	byComm := map[string]uint64{}
	var total uint64
	for pid, a := range after {
		d := a.ticks
		if b, ok := before[pid]; ok && b.comm == a.comm && b.ticks <= a.ticks {
			d = a.ticks - b.ticks
		}
		total += d
		if d > 0 {
			byComm[a.comm] += d
		}
	}
	type kv struct {
		comm  string
		ticks uint64
	}
	var top []kv
	for c, t := range byComm {
		top = append(top, kv{c, t})
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].ticks != top[j].ticks {
			return top[i].ticks > top[j].ticks
		}
		return top[i].comm < top[j].comm
	})
	var parts []string
	for i, t := range top {
		if i == 3 || t.ticks < 5 { // at least 0.05 s
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f s", t.comm, float64(t.ticks)/clockTicks))
	}
	return otherCPU{Seconds: float64(total) / clockTicks, Top: strings.Join(parts, ", ")}
}

// stealSeconds returns the CPU time stolen by the hypervisor so far, all
// CPUs together, from /proc/stat (0 if unknown).
func stealSeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	v, err := strconv.ParseUint(f[8], 10, 64)
	if err != nil {
		return 0
	}
	return float64(v) / clockTicks
}
