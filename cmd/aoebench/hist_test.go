package main

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestBucketRoundTrip(t *testing.T) {
	vals := []uint64{0, 1, 63, 64, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1, 1 << 63, math.MaxUint64}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		vals = append(vals, r.Uint64()>>r.IntN(64))
	}
	for _, v := range vals {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of [0, %d)", v, i, histBuckets)
		}
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Fatalf("bucketOf(%d) = %d, whose range is [%d, %d]", v, i, lo, hi)
		}
		if v >= 2*histSub && float64(hi-lo) > float64(lo)/histSub {
			t.Fatalf("bucket %d = [%d, %d] wider than 1/%d of its start", i, lo, hi, histSub)
		}
	}
	// Buckets are contiguous: each starts right after the previous ends.
	_, prevHi := bucketRange(0)
	for i := 1; i < histBuckets; i++ {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		prevHi = hi
	}
	if prevHi != math.MaxUint64 {
		t.Fatalf("last bucket ends at %d, want %d", prevHi, uint64(math.MaxUint64))
	}
}

func TestQuantile(t *testing.T) {
	tests := []struct {
		name   string
		values []uint64
		q      float64
		want   uint64
	}{
		{"empty", nil, 0.5, 0},
		{"one value", []uint64{42}, 0.999, 42},
		{"median of 1..100", seq(1, 100), 0.5, 50},
		{"p99 of 1..100", seq(1, 100), 0.99, 99},
		{"p100 of 1..100", seq(1, 100), 1, 100},
		{"p99.9 of 1..100 is the maximum", seq(1, 100), 0.999, 100},
		{"tiny q gives the minimum", seq(5, 100), 0.0001, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.record(v)
			}
			if got := h.quantile(tt.q); got != tt.want {
				t.Errorf("quantile(%v) = %d, want %d", tt.q, got, tt.want)
			}
		})
	}
}

func TestQuantileLargeValues(t *testing.T) {
	var h histogram
	// 1000 latencies from 100 µs to 100.999 ms in ns.
	for i := range uint64(1000) {
		h.record((i + 1) * 100_000)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := float64(uint64(math.Ceil(q*1000))) * 100_000
		got := float64(h.quantile(q))
		if math.Abs(got-want)/want > 1.0/histSub {
			t.Errorf("quantile(%v) = %v, want %v within 1/%d", q, got, want, histSub)
		}
	}
	if h.count() != 1000 || h.min != 100_000 || h.max != 100_000_000 {
		t.Errorf("count %d min %d max %d", h.count(), h.min, h.max)
	}
	if m := h.mean(); m != 50_050_000 {
		t.Errorf("mean = %v, want 50050000", m)
	}
	h.reset()
	if h.count() != 0 || h.quantile(0.5) != 0 || h.mean() != 0 {
		t.Errorf("reset left values behind")
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	var h histogram
	v := uint64(1)
	if n := testing.AllocsPerRun(1000, func() { h.record(v); v = v*3 + 7 }); n != 0 {
		t.Errorf("record allocates %v times", n)
	}
}

func seq(a, b uint64) []uint64 {
	var s []uint64
	for v := a; v <= b; v++ {
		s = append(s, v)
	}
	return s
}
