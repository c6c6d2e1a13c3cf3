package main

import "testing"

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name      string
		line      string
		wantComm  string
		wantTicks uint64
		wantErr   bool
	}{
		{name: "vblade", line: "1234 (vblade) S 1 1234 1234 0 -1 4194560 120 0 0 0 250 130 0 0 20 0 1 0 100 2000000 100 18446744073709551615",
			wantComm: "vblade", wantTicks: 380},
		{name: "name with spaces and parentheses", line: "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0",
			wantComm: "a (b) c", wantTicks: 11},
		{name: "truncated", line: "7 (x) R 1 2 3", wantErr: true},
		{name: "no name", line: "7 x R", wantErr: true},
		{name: "not numbers", line: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 a b 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			comm, ticks, err := parseProcStat([]byte(tt.line))
			if tt.wantErr {
				if err == nil {
					t.Errorf("parseProcStat = %q, %d, want an error", comm, ticks)
				}
				return
			}
			if err != nil || comm != tt.wantComm || ticks != tt.wantTicks {
				t.Errorf("parseProcStat = %q, %d, %v; want %q, %d", comm, ticks, err, tt.wantComm, tt.wantTicks)
			}
		})
	}
}

func TestDiffProcs(t *testing.T) {
	before := procSnapshot{1: {"qemu", 100}, 2: {"bash", 5}, 3: {"gone", 50}, 4: {"reused", 900}}
	after := procSnapshot{1: {"qemu", 400}, 2: {"bash", 5}, 5: {"new", 20}, 4: {"other", 10}}
	got := diffProcs(before, after)
	// qemu 300 + new 20 + pid 4 reused by another program 10 = 330 ticks.
	if got.Seconds != 3.3 {
		t.Errorf("Seconds = %v, want 3.3", got.Seconds)
	}
	if want := "qemu 3.00 s, new 0.20 s, other 0.10 s"; got.Top != want {
		t.Errorf("Top = %q, want %q", got.Top, want)
	}
}
