package main

import (
	"fmt"
	"math/bits"
)

// layout is how I/Os map onto the target: a region of whole blocks, each
// block split into frames.
type layout struct {
	start        uint64 // first sector of the region
	blocks       uint64 // blocks in the region
	blockSectors int    // sectors per block (per I/O)
	frameSectors int    // sectors per full frame
}

// newLayout returns the layout of I/Os of bs bytes (0: one frame) in frames
// of frameSectors sectors, over the region of size bytes (0: to the end)
// starting offset bytes into a target of capacity sectors.
func newLayout(capacity uint64, offset, size, bs int64, frameSectors int) (layout, error) {
	if frameSectors < 1 || frameSectors > 255 {
		return layout{}, fmt.Errorf("%d sectors per frame: must be from 1 to 255", frameSectors)
	}
	start := uint64(offset) / 512
	if start >= capacity {
		return layout{}, fmt.Errorf("offset %d is beyond the target's %d bytes", offset, capacity*512)
	}
	n := capacity - start
	if size > 0 {
		if uint64(size)/512 > n {
			return layout{}, fmt.Errorf("region of %d bytes at %d runs past the target's %d bytes", size, offset, capacity*512)
		}
		n = uint64(size) / 512
	}
	l := layout{start: start, blockSectors: int(bs / 512), frameSectors: frameSectors}
	if bs == 0 {
		l.blockSectors = frameSectors
	}
	l.blocks = n / uint64(l.blockSectors)
	if l.blocks == 0 {
		return layout{}, fmt.Errorf("region of %d sectors holds no block of %d sectors", n, l.blockSectors)
	}
	return l, nil
}

// framesPerBlock returns how many frames one I/O takes.
func (l layout) framesPerBlock() int {
	return (l.blockSectors + l.frameSectors - 1) / l.frameSectors
}

// blockLBA returns the first sector of block i.
func (l layout) blockLBA(i uint64) uint64 { return l.start + i*uint64(l.blockSectors) }

// frame returns the sectors of frame i of the block that starts at lba: all
// full frames but the last, which holds the rest.
func (l layout) frame(lba uint64, i int) (uint64, uint8) {
	first := i * l.frameSectors
	n := min(l.frameSectors, l.blockSectors-first)
	return lba + uint64(first), uint8(n)
}

// picker chooses the next block: uniformly at random, or the one after the
// last, wrapping at the end of the region.
type picker struct {
	random bool
	blocks uint64
	next   uint64 // sequential: the next block
	rng    uint64 // random: xorshift state, never zero
}

func newPicker(random bool, blocks, seed uint64) picker {
	rng := splitmix(seed)
	if rng == 0 {
		rng = 1
	}
	return picker{random: random, blocks: blocks, rng: rng}
}

// pick returns the index of the next block.
func (p *picker) pick() uint64 {
	if p.random {
		p.rng = xorshift(p.rng)
		// Lemire's multiply-shift: uniform enough for 2^64 >> blocks.
		hi, _ := bits.Mul64(p.rng, p.blocks)
		return hi
	}
	b := p.next
	p.next++
	if p.next == p.blocks {
		p.next = 0
	}
	return b
}
