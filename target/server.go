package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/packet"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/netconf"
)

// frameBufLen is the size of the buffer for announcements: the largest
// frame any MTU can carry.
const frameBufLen = 65536 + aoe.EthernetHeaderLen

// ServerConfig configures a Server.
type ServerConfig struct {
	// Interfaces are the names of the interfaces to serve on.
	Interfaces []string
	// RecvBuffer and SendBuffer size the sockets' kernel buffers in bytes;
	// 0 means BufferCount frames of the interface's MTU, as vblade does.
	// A socket with a receive ring (see NoRecvRing) receives into the
	// ring instead: twice BufferCount frames, and a batch.
	RecvBuffer, SendBuffer int
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
	// Workers is the number of goroutines per interface that run reads
	// that miss the page cache, writes and flushes, so that many of them
	// are in flight on the disk at once; 0 means the buffer count.
	Workers int
	// IOTimeout is the I/O deadline: a request whose read, write or
	// flush takes longer is answered with an ATA error (the I/O goes on;
	// its late result is dropped), and while it is outstanding the store
	// counts as stalled: requests that need it fail at once. The Linux
	// initiator then fails them instead of retransmitting until it gives
	// up on the device (aoe_deadsecs, 60 s by default), so md can fail
	// the leg. 0 means no deadline.
	IOTimeout time.Duration
	// Queues is the number of receive loops per interface, each on its
	// own socket of a PACKET_FANOUT group that steers requests by the
	// region of their first sector (see netconf.FanoutProgram), so that
	// the receive path can use several cores; 0 or 1 means one.
	Queues int
	// NoRing keeps disk I/O on worker threads even when the store can use
	// io_uring.
	NoRing bool
	// CachedWrites keeps the durable writes of a store opened without
	// O_DIRECT in the page cache, written back by each group's flush (as
	// vblade's are). By default, where the store has an io_uring and the
	// file takes O_DIRECT at sector granularity, they go straight to the
	// disk through a second, O_DIRECT file description
	// (blockstore.Ring.WriteDirect): faster, as the flush then only
	// empties the device's cache, but a written block leaves the page
	// cache (the kernel drops the cached pages a direct write covers), so
	// the next read of it goes to the disk. Reads still use the cache.
	CachedWrites bool
	// NoRecvRing receives frames with recvmmsg(2) instead of from a
	// receive ring (PACKET_RX_RING, made when a socket opens) where the
	// kernel puts each frame as it arrives: no system call per batch.
	NoRecvRing bool
	// MonitorInterval is how often each interface is checked for a new
	// MTU, a link that came back up or an interface that was recreated; 0
	// means 2 seconds.
	MonitorInterval time.Duration
	// Lookup and Listen open the interfaces; nil means netconf.Lookup and
	// netconf.Listen with the export's filter. Tests replace them, e.g. to
	// open sockets in another network namespace.
	Lookup func(name string) (*net.Interface, error)
	Listen func(ifi *net.Interface, cfg netconf.Config) (net.PacketConn, error)
}

// Server serves a Handler on one or more interfaces.
type Server struct {
	h     *Handler
	cfg   ServerConfig
	log   *slog.Logger
	ready chan struct{}

	mu    sync.Mutex
	ports []*port // while Serve runs
}

// NewServer returns a Server for h. It opens nothing until Serve.
func NewServer(h *Handler, cfg ServerConfig) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MonitorInterval == 0 {
		cfg.MonitorInterval = 2 * time.Second
	}
	if cfg.Lookup == nil {
		cfg.Lookup = netconf.Lookup
	}
	if cfg.Listen == nil {
		cfg.Listen = func(ifi *net.Interface, c netconf.Config) (net.PacketConn, error) {
			return netconf.Listen(ifi, c)
		}
	}
	return &Server{h: h, cfg: cfg, log: cfg.Logger, ready: make(chan struct{})}
}

// Ready is closed once every interface's socket is open and the
// announcement has been sent on it.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Stuck reports a receive loop that has been busy with one batch of
// frames for longer than limit without returning to its socket: a hung
// server, which a supervisor (systemd's watchdog) should restart. A loop
// waiting for frames is not busy, however long it waits; a store that is
// slow is the I/O deadline's business (ServerConfig.IOTimeout), not this.
// It returns nil when every loop is fine or Serve is not running.
func (s *Server) Stuck(limit time.Duration) error {
	s.mu.Lock()
	ports := s.ports
	s.mu.Unlock()
	now := time.Now().UnixNano()
	for _, p := range ports {
		if d := p.stuck(now, limit); d > 0 {
			return fmt.Errorf("target: the receive loop on %s has been busy for %v", p.name, d.Round(time.Millisecond))
		}
	}
	return nil
}

// Serve opens a socket on every interface, announces the export, and
// answers requests until ctx is done. It returns an error if an interface
// cannot be opened at startup; later socket errors (link down, interface
// recreated) are logged and survived. When ctx is done Serve stops
// reading, lets the request in progress finish, and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	ports := make([]*port, 0, len(s.cfg.Interfaces))
	defer func() {
		for _, p := range ports {
			p.close()
		}
	}()
	for _, name := range s.cfg.Interfaces {
		p := &port{s: s, name: name, log: s.log.With("if", name)}
		if err := p.open(); err != nil {
			return err
		}
		ports = append(ports, p)
	}
	for _, p := range ports {
		p.announce()
	}
	s.mu.Lock()
	s.ports = ports
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.ports = nil
		s.mu.Unlock()
	}()
	close(s.ready)

	var wg sync.WaitGroup
	for _, p := range ports {
		wg.Add(2)
		go func() { defer wg.Done(); p.serve(ctx) }()
		go func() { defer wg.Done(); p.monitor(ctx) }()
	}
	<-ctx.Done()
	for _, p := range ports {
		p.interrupt()
	}
	wg.Wait()
	return nil
}

// port is one interface a Server serves on.
type port struct {
	s    *Server
	name string
	log  *slog.Logger

	mu    sync.Mutex // guards the fields below
	conn  net.PacketConn
	extra []net.PacketConn // the other receive queues' sockets (fanout)
	gen   int              // incremented whenever the sockets are reopened
	ifi   *net.Interface
	info  Port
	up    bool
	reopn bool // the interface was recreated: serve must reopen

	readers []*reader // the receive loops running (see Server.Stuck)
}

func (p *port) addReader(r *reader) {
	p.mu.Lock()
	p.readers = append(p.readers, r)
	p.mu.Unlock()
}

func (p *port) removeReader(r *reader) {
	p.mu.Lock()
	p.readers = slices.DeleteFunc(p.readers, func(x *reader) bool { return x == r })
	p.mu.Unlock()
}

// stuck returns how long the longest-busy receive loop of p has been
// busy, if longer than limit.
func (p *port) stuck(now int64, limit time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var worst time.Duration
	for _, r := range p.readers {
		if t := r.busySince.Load(); t != 0 {
			worst = max(worst, time.Duration(now-t))
		}
	}
	if worst > limit {
		return worst
	}
	return 0
}

func (p *port) open() error {
	ifi, err := p.s.cfg.Lookup(p.name)
	if err != nil && !errors.Is(err, netconf.ErrLinkDown) {
		return err
	}
	if err != nil {
		p.log.Warn("interface is down; serving once it comes up")
	}
	mac, ok := aoe.MACFrom(ifi.HardwareAddr)
	if !ok {
		return fmt.Errorf("target: interface %s has no Ethernet address", p.name)
	}
	bufs := int(p.s.h.bufcnt) * (ifi.MTU + aoe.EthernetHeaderLen)
	cfg := netconf.Config{
		Filter:     netconf.Filter{Major: p.s.h.major, Minor: p.s.h.minor},
		RecvBuffer: p.s.cfg.RecvBuffer,
		SendBuffer: p.s.cfg.SendBuffer,
	}
	if cfg.RecvBuffer == 0 {
		cfg.RecvBuffer = bufs
	}
	if cfg.SendBuffer == 0 {
		cfg.SendBuffer = bufs
	}
	conn, err := p.s.cfg.Listen(ifi, cfg)
	if err != nil {
		return fmt.Errorf("target: listen on %s: %w", p.name, err)
	}
	extra := p.openQueues(conn, ifi, cfg)
	if !p.s.cfg.NoRecvRing {
		// Each socket gets its receive ring now, before frames are
		// expected: making it drops what the socket has queued. Room
		// for what its buffer would hold: twice the buffer count (a
		// window, and the next), and a batch.
		slots, size := 2*int(p.s.h.bufcnt)+maxBatch, jobBufLen(ifi.MTU)
		if conn, err = withRecvRing(conn, slots, size); err != nil {
			p.log.Info("no receive ring; receiving with recvmmsg", "err", err)
		}
		for i, c := range extra {
			extra[i], _ = withRecvRing(c, slots, size)
		}
	}
	p.mu.Lock()
	old := p.extra
	p.extra = extra
	p.gen++
	p.conn, p.ifi = conn, ifi
	p.info = Port{MAC: mac, MTU: ifi.MTU}
	p.up = ifi.Flags&net.FlagUp != 0
	p.reopn = false
	p.mu.Unlock()
	for _, c := range old {
		c.Close() // their loops wait for the new ones
	}
	p.log.Info("listening", "mac", mac.String(), "mtu", ifi.MTU,
		"sectors_per_frame", MaxSectors(ifi.MTU), "queues", 1+len(extra))
	return nil
}

// openQueues opens the sockets of receive queues 2 and up and joins them
// with conn into a fanout group. If that fails, it logs why and returns
// none: the port serves with one queue.
func (p *port) openQueues(conn net.PacketConn, ifi *net.Interface, cfg netconf.Config) []net.PacketConn {
	n := p.s.cfg.Queues
	if n <= 1 {
		return nil
	}
	conns := []net.PacketConn{conn}
	fail := func(err error) []net.PacketConn {
		for _, c := range conns[1:] {
			c.Close()
		}
		p.log.Warn("serving with one receive queue", "queues", n, "err", err)
		return nil
	}
	for len(conns) < n {
		c, err := p.s.cfg.Listen(ifi, cfg)
		if err != nil {
			return fail(err)
		}
		conns = append(conns, c)
	}
	sc := make([]syscall.Conn, len(conns))
	for i, c := range conns {
		var ok bool
		if sc[i], ok = c.(syscall.Conn); !ok {
			return fail(fmt.Errorf("socket %T has no file descriptor", c))
		}
	}
	if err := netconf.Fanout(sc); err != nil {
		return fail(err)
	}
	return conns[1:]
}

// queue returns the socket of receive queue q (1 and up), nil if it is not
// open, and the generation of the sockets.
func (p *port) queue(q int) (net.PacketConn, Port, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if q-1 < len(p.extra) {
		return p.extra[q-1], p.info, p.gen
	}
	return nil, p.info, p.gen
}

// waitGen waits, at most a second, until the sockets are reopened
// (their generation is no longer gen).
func (p *port) waitGen(ctx context.Context, gen int) {
	for range 20 {
		p.mu.Lock()
		g := p.gen
		p.mu.Unlock()
		if g != gen {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *port) state() (net.PacketConn, Port) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn, p.info
}

func (p *port) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.conn.Close()
	}
	for _, c := range p.extra {
		c.Close()
	}
}

// interrupt unblocks the pending reads.
func (p *port) interrupt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.conn.SetReadDeadline(time.Unix(1, 0))
	}
	for _, c := range p.extra {
		c.SetReadDeadline(time.Unix(1, 0))
	}
}

// announce sends the unsolicited config response.
func (p *port) announce() {
	conn, info := p.state()
	buf := make([]byte, frameBufLen)
	for _, dst := range p.s.h.AnnounceTo() {
		n := p.s.h.Announcement(info, dst, buf)
		if _, err := conn.WriteTo(buf[:n], &packet.Addr{HardwareAddr: dst.HardwareAddr()}); err != nil {
			p.log.Warn("announce failed", "dst", dst.String(), "err", err)
			continue
		}
		p.log.Debug("announced", "dst", dst.String())
	}
}

// serve is the receive loop of one interface: it reads frames, in
// batches where the socket allows, into a bounded pool of buffers, answers
// what needs no disk (and reads of cached data) itself, and hands the rest
// to the engine's workers.
func (p *port) serve(ctx context.Context) {
	e := newEngine(p)
	e.start()
	defer e.stop()
	var queues sync.WaitGroup
	defer queues.Wait()
	for q := 1; q < max(1, p.s.cfg.Queues); q++ {
		queues.Add(1)
		go func() { defer queues.Done(); p.serveQueue(ctx, e, q) }()
	}
	r := newReader(e, max(1, p.s.cfg.Queues))
	defer r.release()
	var errs errLimiter
	for ctx.Err() == nil {
		conn, info := p.state()
		if err := r.round(conn, info); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.readError(ctx, err, &errs)
		}
	}
}

// serveQueue is the receive loop of receive queue q (1 and up) of a port
// with several (fanout): as serve, on the queue's socket. It leaves
// reopening sockets to serve (queue 0), and picks up the new ones.
func (p *port) serveQueue(ctx context.Context, e *engine, q int) {
	r := newReader(e, p.s.cfg.Queues)
	defer r.release()
	for ctx.Err() == nil {
		conn, info, gen := p.queue(q)
		if conn == nil {
			r.closeChain()
			r.flush()
			p.waitGen(ctx, gen)
			continue
		}
		if err := r.round(conn, info); err != nil && ctx.Err() == nil {
			p.waitGen(ctx, gen) // a closed or failing socket: serve reopens it
		}
	}
}

// readError handles a failed read: it logs the error (rate-limited), and
// reopens the socket when the interface was recreated.
func (p *port) readError(ctx context.Context, err error, errs *errLimiter) {
	if errs.allow() {
		p.log.Warn("receive failed", "err", err, "suppressed", errs.suppressed())
	} else {
		time.Sleep(10 * time.Millisecond) // an error storm: do not spin
	}
	p.mu.Lock()
	reopen := p.reopn || errors.Is(err, net.ErrClosed) || !netconf.Transient(err)
	p.mu.Unlock()
	if !reopen {
		return
	}
	// The socket is gone or the interface was recreated: open a new one as
	// soon as the interface is back.
	for ctx.Err() == nil {
		old, _ := p.state()
		if err := p.open(); err == nil {
			old.Close()
			p.announce()
			return
		} else if errs.allow() {
			p.log.Warn("reopen failed", "err", err, "suppressed", errs.suppressed())
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// monitor watches the interface: a new MTU changes the sectors per frame
// and is announced; a link that comes back up is announced; a recreated
// interface (new index) makes the serve loop reopen its socket.
func (p *port) monitor(ctx context.Context) {
	t := time.NewTicker(p.s.cfg.MonitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ifi, err := p.s.cfg.Lookup(p.name)
		if err != nil && !errors.Is(err, netconf.ErrLinkDown) {
			p.mu.Lock()
			p.up = false
			p.mu.Unlock()
			continue
		}
		up := err == nil
		p.mu.Lock()
		recreated := ifi.Index != p.ifi.Index
		mtu := ifi.MTU != p.info.MTU
		cameUp := up && !p.up
		p.up = up
		if recreated {
			p.reopn = true
			if p.conn != nil {
				p.conn.SetReadDeadline(time.Unix(1, 0)) // wake the serve loop
			}
		} else if mtu {
			p.info.MTU = ifi.MTU
		}
		p.mu.Unlock()
		switch {
		case recreated:
			p.log.Warn("interface was recreated; reopening", "index", ifi.Index)
		case mtu || cameUp:
			p.log.Info("interface changed; announcing", "up", up, "mtu", ifi.MTU,
				"sectors_per_frame", MaxSectors(ifi.MTU))
			if up {
				p.announce()
			}
		}
	}
}

// errLimiter rate-limits error logging to a few lines a second, counting
// what it suppressed.
type errLimiter struct {
	mu    sync.Mutex
	last  time.Time
	count int
	supp  int
}

func (l *errLimiter) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.last) > time.Second {
		l.last, l.count = now, 0
	}
	l.count++
	if l.count > 5 {
		l.supp++
		return false
	}
	return true
}

func (l *errLimiter) suppressed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.supp
	l.supp = 0
	return n
}
