package target

import (
	"testing"
	"time"
)

// TestCacheGuess drives the guess with runs of cache hits and misses and
// counts the chains it tries.
func TestCacheGuess(t *testing.T) {
	const w, skip = guessWindow, guessSkip
	if guessMisses != 24 || skip != w*guessSample {
		t.Fatal("the table assumes 24 misses in 32, and a window of samples per skipping period")
	}
	tests := []struct {
		name  string
		hit   func(i int) bool // outcome of the i-th attempt
		n     int              // chains
		tried int              // of which tried
	}{
		{"all hits", func(int) bool { return true }, 1000, 1000},
		// One window of misses, then a skipping period after another,
		// each tried one chain in guessSample.
		{"all misses", func(int) bool { return false }, w + 4*skip, w + 4*w},
		{"23 misses in 32 are not enough", func(i int) bool { return i%w >= 23 }, 20 * w, 20 * w},
		{"24 misses in 32 are", func(i int) bool { return i%w >= 24 }, w + skip, w + w},
		// After one window of misses, the samples of the skipping period
		// hit: the period ends, and every chain is tried again.
		{"warming up", func(i int) bool { return i >= w }, w + skip + 100, w + w + 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g cacheGuess
			attempts := 0
			for range tt.n {
				if g.try() {
					g.note(tt.hit(attempts))
					attempts++
				}
			}
			if attempts != tt.tried {
				t.Errorf("tried %d of %d chains, want %d", attempts, tt.n, tt.tried)
			}
		})
	}
}

// TestCacheGuessProbe checks when tried chains are probed first: after a
// window of attempts with more than guessHot misses.
func TestCacheGuessProbe(t *testing.T) {
	if guessHot != 1 {
		t.Fatal("the table assumes guessHot 1")
	}
	tests := []struct {
		misses int // in the first window
		probe  bool
	}{
		{0, false},
		{1, false},
		{2, true},
		{guessMisses - 1, true},
		{guessWindow, true},
	}
	for _, tt := range tests {
		var g cacheGuess
		if g.probe() {
			t.Fatal("a new guess probes")
		}
		for i := range guessWindow {
			if !g.try() {
				t.Fatalf("%d misses: attempt %d not tried in the first window", tt.misses, i)
			}
			g.note(i >= tt.misses)
			if i < guessWindow-1 && g.probe() {
				t.Fatalf("%d misses: probing before the window ends", tt.misses)
			}
		}
		if g.probe() != tt.probe {
			t.Errorf("%d misses in a window: probe %v, want %v", tt.misses, g.probe(), tt.probe)
		}
		// A window of hits ends probing.
		for range guessWindow * guessSample {
			if g.try() {
				g.note(true)
			}
		}
		if g.probe() {
			t.Errorf("%d misses, then hits: still probing", tt.misses)
		}
	}
}

// TestGatherMore checks when a group of durable writes waits for the
// writes still at the disk.
func TestGatherMore(t *testing.T) {
	for _, tt := range []struct {
		writing           int
		waited, flushTime time.Duration
		want              bool
	}{
		{0, 0, 400 * time.Microsecond, false},                    // nothing to wait for
		{3, 0, 0, false},                                         // no flush timed yet
		{3, 50 * time.Microsecond, 400 * time.Microsecond, true}, // within half a flush
		{3, 200 * time.Microsecond, 400 * time.Microsecond, false},
		{1, 900 * time.Microsecond, 10 * time.Millisecond, true},
		{1, maxGather, 10 * time.Millisecond, false}, // bounded by maxGather
	} {
		if got := gatherMore(tt.writing, tt.waited, tt.flushTime); got != tt.want {
			t.Errorf("gatherMore(%d, %v, %v) = %v, want %v", tt.writing, tt.waited, tt.flushTime, got, tt.want)
		}
	}
}
