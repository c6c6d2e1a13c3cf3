package main

import (
	"math"
	"math/bits"
)

// histSubBits sets the histogram's precision: every power of two is split
// into 2^histSubBits buckets, so a quantile is off by less than 1/64 (1.6 %)
// of its value. Values below 2^(histSubBits+1) are counted exactly.
const histSubBits = 6

const (
	histSub     = 1 << histSubBits
	histBuckets = (65 - histSubBits) * histSub // up to bucketOf(1<<64-1)
)

// histogram counts durations in nanoseconds in log-linear buckets (the
// HdrHistogram layout). It has a fixed size and never allocates, so the
// measuring loop can record every frame.
type histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      uint64
	min, max uint64
}

// bucketOf returns the bucket that counts v.
func bucketOf(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1 // v>>e is in [histSub, 2*histSub)
	return (e+1)*histSub + int(v>>e) - histSub
}

// bucketRange returns the smallest and largest value counted by bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < 2*histSub {
		return uint64(i), uint64(i)
	}
	e := uint(i/histSub - 1)
	m := uint64(i%histSub + histSub)
	lo = m << e
	return lo, lo + (1 << e) - 1
}

// record counts the value v.
func (h *histogram) record(v uint64) {
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// reset forgets every value.
func (h *histogram) reset() { *h = histogram{} }

// count returns how many values were recorded.
func (h *histogram) count() uint64 { return h.n }

// mean returns the mean of the values, 0 without any.
func (h *histogram) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return float64(h.sum) / float64(h.n)
}

// quantile returns the q-quantile (0 < q <= 1) of the values by the
// nearest-rank method: the smallest value such that at least q of all
// values are at or below it, as the midpoint of its bucket, clamped to the
// smallest and largest value recorded. It returns 0 without any values.
func (h *histogram) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
