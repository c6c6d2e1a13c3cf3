package blockstore

import (
	"sync"
	"unsafe"
)

const (
	// bounceSize is the size of a bounce buffer for unaligned O_DIRECT I/O;
	// larger requests are split.
	bounceSize = 64 << 10

	// bounceAlign is the alignment of bounce buffers: a page, enough for
	// any O_DIRECT memory alignment requirement.
	bounceAlign = 4096
)

// bounce is a page-aligned buffer; the pool holds pointers so that Put does
// not allocate.
type bounce struct{ buf []byte }

var bouncePool = sync.Pool{New: func() any {
	raw := make([]byte, bounceSize+bounceAlign)
	skip := (bounceAlign - uintptr(unsafe.Pointer(&raw[0]))%bounceAlign) % bounceAlign
	return &bounce{buf: raw[skip : skip+bounceSize : skip+bounceSize]}
}}

// getBounce returns a page-aligned buffer of bounceSize bytes in b.buf.
func getBounce() *bounce { return bouncePool.Get().(*bounce) }

// putBounce returns a buffer from getBounce to the pool.
func putBounce(b *bounce) { bouncePool.Put(b) }
