package target

import (
	"sync"

	"github.com/aoetarget/aoetarget/aoe"
)

// span is the sector range a read or write request touches.
type span struct {
	lba, n uint64
	write  bool
}

// conflicts reports whether two requests must run in arrival order: they
// overlap and at least one writes.
func (a span) conflicts(b span) bool {
	return (a.write || b.write) && a.lba < b.lba+b.n && b.lba < a.lba+a.n
}

// kind classifies a request for the engine.
type kind uint8

const (
	kindInline kind = iota // needs no storage: answered by the reader
	kindRead               // a read: inline if cached, else ordered
	kindWrite              // a write: ordered, on a worker
	kindFlush              // FLUSH CACHE: on a worker, unordered
)

// classify returns what req needs, and for reads and writes the sectors
// they touch. It looks only at what it must (the handler validates
// everything); a request it cannot parse is inline, for the handler to
// drop or answer.
func classify(req []byte) (kind, span) {
	f, err := aoe.ParseFrame(req)
	if err != nil || f.Header.Command != aoe.CommandATA || f.Header.Response() {
		return kindInline, span{}
	}
	a, err := aoe.ParseATA(f.Arg)
	if err != nil {
		return kindInline, span{}
	}
	switch a.CmdStatus {
	case aoe.ATAReadSectors, aoe.ATAWriteSectors:
		a.LBA &= aoe.MaxLBA28
	case aoe.ATAReadSectorsExt, aoe.ATAWriteSectorsExt:
	case aoe.ATAFlushCache, aoe.ATAFlushCacheExt:
		return kindFlush, span{}
	default:
		return kindInline, span{}
	}
	sp := span{lba: a.LBA, n: uint64(a.SectorCount)}
	if a.CmdStatus == aoe.ATAWriteSectors || a.CmdStatus == aoe.ATAWriteSectorsExt {
		sp.write = true
		return kindWrite, sp
	}
	return kindRead, sp
}

// scheduler keeps the reads and writes of one port that are in flight, and
// makes requests that conflict run in arrival order: the Linux initiator
// retransmits under new tags, so an old write that arrives late must not
// overtake a newer one to the same sectors.
type scheduler struct {
	mu     sync.Mutex
	active []*job // admitted and not done, in arrival order
}

// busy reports whether a request for sp would have to wait.
func (s *scheduler) busy(sp span) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.active {
		if a.span.conflicts(sp) {
			return true
		}
	}
	return false
}

// admit registers j, which arrived after every active job, and reports
// whether it may run now; otherwise done runs it when the jobs it
// conflicts with are done.
func (s *scheduler) admit(j *job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	j.deps = 0
	for _, a := range s.active {
		if a.span.conflicts(j.span) {
			a.waiters = append(a.waiters, j)
			j.deps++
		}
	}
	s.active = append(s.active, j)
	return j.deps == 0
}

// done removes j and appends to ready the jobs that may run now.
func (s *scheduler) done(j *job, ready []*job) []*job {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, a := range s.active {
		if a == j {
			s.active = append(s.active[:i], s.active[i+1:]...)
			break
		}
	}
	for _, w := range j.waiters {
		w.deps--
		if w.deps == 0 {
			ready = append(ready, w)
		}
	}
	clear(j.waiters)
	j.waiters = j.waiters[:0]
	return ready
}
