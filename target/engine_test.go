package target

import "testing"

// TestCacheGuess drives the guess with runs of cache hits and misses and
// counts the chains it tries.
func TestCacheGuess(t *testing.T) {
	tests := []struct {
		name  string
		hit   func(i int) bool // outcome of the i-th attempt
		n     int              // chains
		tried int              // of which tried
	}{
		{"all hits", func(int) bool { return true }, 1000, 1000},
		{"all misses", func(int) bool { return false }, 32 + 4*256, 32 + 4*32},
		{"23 misses in 32 are not enough", func(i int) bool { return i%32 >= 23 }, 640, 640},
		{"24 misses in 32 are", func(i int) bool { return i%32 >= 24 }, 32 + 256, 32 + 32},
		// After one window of misses, the samples of the skipping period
		// hit: the period ends, and every chain is tried again.
		{"warming up", func(i int) bool { return i >= 32 }, 32 + 256 + 100, 32 + 32 + 100},
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
