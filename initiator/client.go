package initiator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/netconf"
	"github.com/mdlayher/packet"
)

// Defaults for the options of a Client.
const (
	// DefaultTimeout is how long a request waits for its reply before it is
	// sent again with a new tag. It is the Linux initiator's initial
	// round-trip estimate (rttavg, 250 ms).
	DefaultTimeout = 250 * time.Millisecond
	// DefaultWindow is how many ATA frames ReadAt and WriteAt keep in
	// flight: the Linux initiator uses 16 with vblade, whose default
	// buffer count is 16.
	DefaultWindow = 16
)

// ErrNoReply means that a request's context ended before any reply
// arrived, however often it was sent. Errors that wrap it also wrap the
// context's error.
var ErrNoReply = errors.New("initiator: no reply")

const (
	// maxTags is how many tags of one request answer it: the newest and the
	// ones of up to three earlier attempts, so that a reply that is late
	// rather than lost still completes the request.
	maxTags = 4
	// minFrameLen is the shortest Ethernet frame without its FCS (ETH_ZLEN);
	// shorter requests are padded with zeros, as aoecfg does.
	minFrameLen = 60
	// maxBackoff bounds the interval between resends of a request, in
	// multiples of the timeout.
	maxBackoff = 16
	// freeBuffers bounds the free list of frame buffers.
	freeBuffers = 4 * DefaultWindow
	// tagOffset is where the tag sits in a frame.
	tagOffset = aoe.EthernetHeaderLen + 6
	// tagUserland is bit 31 of the tag, which marks userland tools; the
	// Linux initiator drops replies that carry it.
	tagUserland = 1 << 31
)

// A Client is an AoE initiator on one network interface. Its methods may be
// called from several goroutines at once.
type Client struct {
	conn    net.PacketConn
	mtu     int
	bufSize int

	optMu   sync.Mutex
	src     aoe.MAC
	timeout time.Duration
	window  int

	mu      sync.Mutex
	pending map[uint32]*call // by tag
	tagSeq  uint32           // guarded by mu

	free    chan []byte // frame buffers, bounded
	batches sync.Pool   // *batch, returned only when nothing can still reach them

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed when the reader stops
	readErr   error         // why the reader stopped; set before done is closed
}

// New returns a Client that sends and receives whole Ethernet frames on conn,
// from the interface whose hardware address is src and whose MTU is mtu. The
// Client owns conn and closes it in Close. New starts the goroutine that
// reads replies.
func New(conn net.PacketConn, src aoe.MAC, mtu int) *Client {
	c := &Client{
		conn:    conn,
		mtu:     mtu,
		bufSize: max(mtu, 1500) + aoe.EthernetHeaderLen + 4, // room for a VLAN tag
		src:     src,
		timeout: DefaultTimeout,
		window:  DefaultWindow,
		pending: make(map[uint32]*call),
		tagSeq:  uint32(time.Now().UnixNano()),
		free:    make(chan []byte, freeBuffers),
		done:    make(chan struct{}),
	}
	go c.read()
	return c
}

// Dial opens an AoE socket on the named interface with netconf and returns a
// Client that uses the interface's MAC address and MTU.
func Dial(ifname string) (*Client, error) {
	ifi, err := netconf.Lookup(ifname)
	if err != nil {
		return nil, err
	}
	src, ok := aoe.MACFrom(ifi.HardwareAddr)
	if !ok {
		return nil, fmt.Errorf("initiator: interface %s has no Ethernet address (%v)", ifname, ifi.HardwareAddr)
	}
	// Room for a window of jumbo frames in each direction; the kernel
	// charges a frame's truesize, about twice its length at MTU 9000.
	const sockBuf = 4 << 20
	conn, err := netconf.Listen(ifi, netconf.Config{
		Filter:     netconf.Filter{Responses: true, AnyAddress: true},
		RecvBuffer: sockBuf,
		SendBuffer: sockBuf,
	})
	if err != nil {
		return nil, err
	}
	return New(conn, src, ifi.MTU), nil
}

// Close closes the connection and waits for the reader to stop. Requests
// still waiting fail with an error wrapping net.ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.closeErr = c.conn.Close()
		<-c.done
	})
	return c.closeErr
}

// MTU returns the MTU the Client was created with.
func (c *Client) MTU() int { return c.mtu }

// SetTimeout sets how long a request waits for its reply before it is sent
// again with a new tag; each further resend waits twice as long as the one
// before, up to 16 times d. d <= 0 restores DefaultTimeout.
func (c *Client) SetTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultTimeout
	}
	c.optMu.Lock()
	c.timeout = d
	c.optMu.Unlock()
}

// SetWindow sets how many ATA frames one ReadAt or WriteAt keeps in flight;
// n <= 0 restores DefaultWindow. A target's buffer count lowers it further.
func (c *Client) SetWindow(n int) {
	if n <= 0 {
		n = DefaultWindow
	}
	c.optMu.Lock()
	c.window = n
	c.optMu.Unlock()
}

// SetSourceMAC sets the source address of the requests sent from now on, so
// that a test can speak as another host; replies are accepted only when
// they are addressed to the source of their request. The interface must be
// able to receive frames for m (a veth does; a real NIC needs promiscuous
// mode).
func (c *Client) SetSourceMAC(m aoe.MAC) {
	c.optMu.Lock()
	c.src = m
	c.optMu.Unlock()
}

// SourceMAC returns the source address of new requests.
func (c *Client) SourceMAC() aoe.MAC {
	c.optMu.Lock()
	defer c.optMu.Unlock()
	return c.src
}

func (c *Client) options() (src aoe.MAC, timeout time.Duration, window int) {
	c.optMu.Lock()
	defer c.optMu.Unlock()
	return c.src, c.timeout, c.window
}

// getBuf returns a frame buffer of full length from the free list.
func (c *Client) getBuf() []byte {
	select {
	case b := <-c.free:
		return b[:cap(b)]
	default:
		return make([]byte, c.bufSize)
	}
}

// putBuf returns b to the free list, or drops it when the list is full.
func (c *Client) putBuf(b []byte) {
	if cap(b) < c.bufSize {
		return
	}
	select {
	case c.free <- b:
	default:
	}
}

// errClosed is the error of requests when the reader has stopped.
func (c *Client) errClosed() error {
	if c.closing.Load() {
		return fmt.Errorf("initiator: client closed: %w", net.ErrClosed)
	}
	return fmt.Errorf("initiator: reading replies: %w", c.readErr)
}

// read is the reader goroutine: it receives frames and hands the replies to
// the requests that wait for them, until the connection fails or closes.
func (c *Client) read() {
	defer close(c.done)
	var buf []byte
	errs := 0
	for {
		if buf == nil {
			buf = c.getBuf()
		}
		n, _, err := c.conn.ReadFrom(buf)
		if n > 0 && c.dispatch(buf[:n]) {
			buf = nil // handed over with the reply
		}
		if err == nil {
			errs = 0
			continue
		}
		// An interface going down makes a read fail once with ENETDOWN;
		// the socket works again when it comes back up. Anything else, or
		// a run of failures, ends the client.
		errs++
		if c.closing.Load() || !netconf.Transient(err) || errs > 100 {
			c.readErr = err
			return
		}
	}
}

// dispatch delivers the frame in b to the request it answers and reports
// whether it did; the request then owns b.
func (c *Client) dispatch(b []byte) bool {
	f, err := aoe.ParseFrame(b)
	if err != nil || !f.Header.Response() {
		return false
	}
	c.mu.Lock()
	cl := c.pending[f.Header.Tag]
	if cl == nil || !cl.matches(f) {
		c.mu.Unlock()
		return false
	}
	if !cl.multi {
		c.unregisterLocked(cl)
		cl.answered = true
	}
	done := cl.done
	c.mu.Unlock()
	select {
	case done <- reply{call: cl, b: b}:
		return true
	default: // only a multi request's channel can be full
		return false
	}
}

// A reply is a frame delivered to the request it answers. b is a frame
// buffer that the receiver returns with putBuf.
type reply struct {
	call *call
	b    []byte
}

// A call is one request in flight: its frame, the tags it was sent with and
// what a reply must look like.
type call struct {
	// Set before the call is registered, read by the reader under mu.
	src   aoe.MAC
	major uint16
	minor uint8
	cmd   aoe.Command
	multi bool       // every reply is delivered (Discover)
	done  chan reply // the batch's
	tags  [maxTags]uint32
	ntags int
	// answered is set, under mu, when the reply is handed to the batch;
	// from then on the call must not be sent again, although it is live
	// until the batch takes the reply.
	answered bool

	// Owned by the batch.
	dst      packet.Addr
	dstMAC   aoe.MAC
	req      []byte // the request frame
	live     bool
	due      time.Time
	interval time.Duration
	off, n   int    // ReadAt/WriteAt: where the data goes, in bytes
	lba      uint64 // ReadAt/WriteAt: the first sector
}

// matches reports whether f, which carries one of the call's tags, answers
// it: addressed to the call's source, the same command and the address the
// call asked for (any, when it asked with a broadcast address).
func (cl *call) matches(f aoe.Frame) bool {
	h := f.Header
	return f.Dst == cl.src && h.Command == cl.cmd &&
		(cl.major == aoe.BroadcastMajor || h.Major == cl.major) &&
		(cl.minor == aoe.BroadcastMinor || h.Minor == cl.minor)
}

// unregisterLocked forgets every tag of cl.
func (c *Client) unregisterLocked(cl *call) {
	for _, t := range cl.tags[:cl.ntags] {
		delete(c.pending, t)
	}
	cl.ntags = 0
}

// send gives cl's frame a fresh tag, registers it and writes the frame. The
// call keeps answering to its last maxTags tags. A call whose reply is
// already on its way to the batch is not sent again.
func (c *Client) send(cl *call) error {
	c.mu.Lock()
	if cl.answered {
		c.mu.Unlock()
		return nil
	}
	tag := c.tagSeq
	for {
		tag++
		if _, used := c.pending[tag|tagUserland]; !used {
			break
		}
	}
	c.tagSeq = tag
	tag |= tagUserland
	if cl.ntags == maxTags {
		delete(c.pending, cl.tags[0])
		copy(cl.tags[:], cl.tags[1:])
		cl.ntags--
	}
	cl.tags[cl.ntags] = tag
	cl.ntags++
	c.pending[tag] = cl
	c.mu.Unlock()

	binary.BigEndian.PutUint32(cl.req[tagOffset:], tag)
	if _, err := c.conn.WriteTo(cl.req, &cl.dst); err != nil {
		if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ENETDOWN) {
			return nil // as good as lost on the wire; the timer resends it
		}
		return fmt.Errorf("initiator: sending %v to %d.%d: %w", cl.cmd, cl.major, cl.minor, err)
	}
	return nil
}

// A batch is a set of calls in flight that share one channel for their
// replies and one timer for their retransmissions.
type batch struct {
	c       *Client
	done    chan reply
	calls   []call
	timer   *time.Timer
	timeout time.Duration
	src     aoe.MAC
}

// getBatch returns a batch with room for n calls, using the options in
// force now.
func (c *Client) getBatch(n int) *batch {
	b, _ := c.batches.Get().(*batch)
	if b == nil || len(b.calls) < n {
		b = &batch{
			c:     c,
			done:  make(chan reply, n),
			calls: make([]call, n),
			timer: time.NewTimer(time.Hour),
		}
		b.timer.Stop()
	}
	b.src, b.timeout, _ = c.options()
	return b
}

// release returns the batch for reuse. Only a batch whose calls all got
// their reply may be reused: then no tag of it is registered and nothing
// can still be sent to its channel.
func (b *batch) release() {
	b.c.batches.Put(b)
}

// abort unregisters the calls still in flight and drops the batch.
func (b *batch) abort() {
	c := b.c
	c.mu.Lock()
	for i := range b.calls {
		if cl := &b.calls[i]; cl.ntags > 0 {
			c.unregisterLocked(cl)
		}
	}
	c.mu.Unlock()
	for i := range b.calls {
		if cl := &b.calls[i]; cl.req != nil {
			c.putBuf(cl.req)
			cl.req = nil
			cl.live = false
		}
	}
	for {
		select {
		case r := <-b.done:
			c.putBuf(r.b)
		default:
			return
		}
	}
}

// idle returns a call slot that is not in flight, or nil.
func (b *batch) idle() *call {
	for i := range b.calls {
		if !b.calls[i].live {
			return &b.calls[i]
		}
	}
	return nil
}

// prepare sets cl up for a request to dst with header h and returns the
// frame buffer with the Ethernet and AoE headers written; the caller
// appends the argument and calls start.
func (b *batch) prepare(cl *call, dst aoe.MAC, h aoe.Header) ([]byte, error) {
	h.Version = aoe.Version
	*cl = call{
		src:      b.src,
		major:    h.Major,
		minor:    h.Minor,
		cmd:      h.Command,
		done:     b.done,
		dstMAC:   dst,
		interval: b.timeout,
	}
	cl.dst.HardwareAddr = cl.dstMAC[:]
	f := aoe.Frame{Dst: dst, Src: b.src, Header: h}
	buf, err := f.AppendHeaders(b.c.getBuf()[:0])
	if err != nil {
		b.c.putBuf(buf)
		return nil, err
	}
	return buf, nil
}

// start sends the request frame req for cl, padded to the Ethernet
// minimum, and puts cl in flight.
func (b *batch) start(cl *call, req []byte) error {
	if n := len(req); n < minFrameLen {
		req = req[:minFrameLen]
		clear(req[n:])
	}
	cl.req = req
	select {
	case <-b.c.done:
		return b.c.errClosed()
	default:
	}
	cl.live = true
	cl.due = time.Now().Add(cl.interval)
	return b.c.send(cl)
}

// wait returns the next reply to a call of the batch, resending the calls
// whose time is up with new tags. It returns ctx.Err() when ctx ends and
// an error wrapping net.ErrClosed when the client is closed. A call that
// is not multi leaves flight with its reply; its request buffer is freed.
func (b *batch) wait(ctx context.Context) (reply, error) {
	for {
		var next time.Time
		for i := range b.calls {
			if cl := &b.calls[i]; cl.live && (next.IsZero() || cl.due.Before(next)) {
				next = cl.due
			}
		}
		if next.IsZero() {
			return reply{}, errors.New("initiator: internal error: waiting with nothing in flight")
		}
		if d := time.Until(next); d > 0 {
			b.timer.Reset(d)
		} else {
			if err := b.resend(); err != nil {
				return reply{}, err
			}
			continue
		}
		select {
		case r := <-b.done:
			b.timer.Stop()
			if cl := r.call; !cl.multi {
				cl.live = false
				b.c.putBuf(cl.req)
				cl.req = nil
			}
			return r, nil
		case <-b.timer.C:
			if err := b.resend(); err != nil {
				return reply{}, err
			}
		case <-ctx.Done():
			b.timer.Stop()
			return reply{}, ctx.Err()
		case <-b.c.done:
			b.timer.Stop()
			return reply{}, b.c.errClosed()
		}
	}
}

// resend sends again, with new tags, the calls whose time is up. Each
// resend doubles the call's interval, up to maxBackoff times the timeout
// (without limit for a multi call), so that a target slower than the
// timeout is not buried under resends.
func (b *batch) resend() error {
	now := time.Now()
	for i := range b.calls {
		cl := &b.calls[i]
		if !cl.live || cl.due.After(now) {
			continue
		}
		cl.interval *= 2
		if !cl.multi {
			cl.interval = min(cl.interval, maxBackoff*b.timeout)
		}
		cl.due = now.Add(cl.interval)
		if err := b.c.send(cl); err != nil {
			return err
		}
	}
	return nil
}

// noReply returns the error of a request whose context ended.
func noReply(what string, major uint16, minor uint8, ctxErr error) error {
	return &noReplyError{what: what, addr: addr(major, minor), err: ctxErr}
}

// noReplyError is ErrNoReply with the request and the context's error.
type noReplyError struct {
	what, addr string
	err        error
}

func (e *noReplyError) Error() string {
	return fmt.Sprintf("initiator: no reply to %s %s (%v)", e.what, e.addr, e.err)
}

func (e *noReplyError) Is(target error) bool { return target == ErrNoReply }

func (e *noReplyError) Unwrap() error { return e.err }

// addr formats a shelf.slot address, with * for broadcast fields.
func addr(major uint16, minor uint8) string {
	s := "*"
	if major != aoe.BroadcastMajor {
		s = fmt.Sprint(major)
	}
	if minor != aoe.BroadcastMinor {
		return s + "." + fmt.Sprint(minor)
	}
	return s + ".*"
}
