package main

import "testing"

func TestLayout(t *testing.T) {
	tests := []struct {
		name             string
		capacity         uint64
		offset, size, bs int64
		frameSectors     int
		wantBlocks       uint64
		wantStart        uint64
		wantFrames       int
		wantSplit        []uint8 // sector counts of the frames of a block
		wantErr          bool
	}{
		{name: "4k at MTU 1500", capacity: 1 << 20, bs: 4096, frameSectors: 2,
			wantBlocks: 1 << 17, wantFrames: 4, wantSplit: []uint8{2, 2, 2, 2}},
		{name: "4k at MTU 9000", capacity: 1 << 20, bs: 4096, frameSectors: 17,
			wantBlocks: 1 << 17, wantFrames: 1, wantSplit: []uint8{8}},
		{name: "64k at MTU 9000, last frame short", capacity: 1 << 20, bs: 65536, frameSectors: 17,
			wantBlocks: 1 << 13, wantFrames: 8, wantSplit: []uint8{17, 17, 17, 17, 17, 17, 17, 9}},
		{name: "one frame per I/O", capacity: 1700, bs: 0, frameSectors: 17,
			wantBlocks: 100, wantFrames: 1, wantSplit: []uint8{17}},
		{name: "region", capacity: 1 << 20, offset: 1 << 20, size: 1 << 20, bs: 4096, frameSectors: 2,
			wantStart: 2048, wantBlocks: 256, wantFrames: 4, wantSplit: []uint8{2, 2, 2, 2}},
		{name: "partial block at the end is left out", capacity: 15, bs: 4096, frameSectors: 2,
			wantBlocks: 1, wantFrames: 4, wantSplit: []uint8{2, 2, 2, 2}},
		{name: "offset past the end", capacity: 8, offset: 4096, bs: 4096, frameSectors: 2, wantErr: true},
		{name: "region past the end", capacity: 16, size: 16384, bs: 4096, frameSectors: 2, wantErr: true},
		{name: "no whole block", capacity: 7, bs: 4096, frameSectors: 2, wantErr: true},
		{name: "zero sectors per frame", capacity: 16, bs: 4096, frameSectors: 0, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := newLayout(tt.capacity, tt.offset, tt.size, tt.bs, tt.frameSectors)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("newLayout = %+v, want an error", l)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.blocks != tt.wantBlocks || l.start != tt.wantStart || l.framesPerBlock() != tt.wantFrames {
				t.Fatalf("layout %+v: %d blocks from %d, %d frames per block; want %d from %d, %d",
					l, l.blocks, l.start, l.framesPerBlock(), tt.wantBlocks, tt.wantStart, tt.wantFrames)
			}
			lba := l.blockLBA(3)
			if want := tt.wantStart + 3*uint64(l.blockSectors); lba != want {
				t.Errorf("blockLBA(3) = %d, want %d", lba, want)
			}
			next := lba
			for i, want := range tt.wantSplit {
				got, n := l.frame(lba, i)
				if got != next || n != want {
					t.Errorf("frame %d = %d+%d, want %d+%d", i, got, n, next, want)
				}
				next += uint64(n)
			}
			if next != lba+uint64(l.blockSectors) {
				t.Errorf("frames cover up to %d, block ends at %d", next, lba+uint64(l.blockSectors))
			}
		})
	}
}

func TestPickerSequential(t *testing.T) {
	p := newPicker(false, 3, 1)
	var got []uint64
	for range 7 {
		got = append(got, p.pick())
	}
	want := []uint64{0, 1, 2, 0, 1, 2, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sequential picks = %v, want %v", got, want)
		}
	}
}

func TestPickerRandom(t *testing.T) {
	const blocks = 10
	p := newPicker(true, blocks, 42)
	seen := make([]int, blocks)
	for range 10000 {
		b := p.pick()
		if b >= blocks {
			t.Fatalf("pick = %d, out of %d blocks", b, blocks)
		}
		seen[b]++
	}
	for b, n := range seen {
		if n < 800 || n > 1200 {
			t.Errorf("block %d picked %d times in 10000, want about 1000", b, n)
		}
	}
	q := newPicker(true, blocks, 42)
	r := newPicker(true, blocks, 42)
	for range 100 {
		if q.pick() != r.pick() {
			t.Fatal("the same seed gives different picks")
		}
	}
}
