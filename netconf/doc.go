// Package netconf finds the network interface an AoE target or initiator
// uses and opens its AF_PACKET socket: Lookup checks the interface, MTU reads
// its current MTU, Listen opens a raw packet socket (github.com/mdlayher/packet)
// for ethertype 0x88A2 with a classic BPF Filter attached, and Transient,
// BoundIndex, Rebind and LinkWatcher let a serve loop survive the interface
// going down, coming back or being replaced.
//
// Sockets exist only on Linux; elsewhere Listen and its companions return a
// "not implemented" error, while Lookup, MTU, Filter.Program and Transient
// still work.
//
// The returned sockets are plain *packet.Conn values (a net.PacketConn): the
// caller reads and writes whole Ethernet frames, and may wrap the socket in
// its own interface for tests.
//
// # What the kernel does to a bound packet socket
//
// Measured on Linux 6.18 over veth pairs in network namespaces (see
// netconf_linux_test.go; the af_packet code involved, packet_notifier and
// packet_snd, has been stable for years):
//
//   - Interface set down (ip link set X down): the socket gets a pending
//     ENETDOWN, reported exactly once to the next ReadFrom or WriteTo,
//     whichever comes first; a blocked ReadFrom wakes up with it at once. A
//     write that receives the pending error did not send its frame. After
//     that, ReadFrom blocks and every WriteTo fails with ENETDOWN while the
//     interface stays down.
//   - Interface up again: the same socket receives and sends again; nothing
//     needs to be reopened. Frames queued before the down event are still
//     delivered, after the ENETDOWN. An interface that went down and up
//     before anyone read still reports the one ENETDOWN.
//   - Link partner gone (carrier off; for a veth, the peer is down): reads
//     see nothing. Writes on a veth fail with ENOBUFS until the kernel's link
//     watcher has processed the carrier loss (asynchronously; a second later
//     here), and succeed after that while their frames are dropped silently
//     (without carrier the kernel swaps in its no-op transmit queue, for
//     any driver).
//   - Interface just set up: the carrier comes on asynchronously (the link
//     watcher again; up to a second between veths in two namespaces). Until
//     then writes succeed but the frames are dropped silently. Tests wait
//     for net.FlagRunning (internal/netns.WaitRunning) and still retry their
//     first frame; an initiator retransmits anyway.
//   - MTU changed: the socket keeps working; writes longer than the new MTU
//     plus the 14-byte Ethernet header fail with EMSGSIZE. Read the MTU again
//     (MTU, or a LinkWatcher event) before advertising it.
//   - Interface deleted (or moved to another namespace): a running socket
//     gets the one ENETDOWN, then the kernel unbinds it for good (BoundIndex
//     returns -1). Reads block forever, writes fail with ENXIO. A new
//     interface with the same name has a new index, and the old socket never
//     sees it: it must be replaced, which Rebind does.
//   - Listen on a down interface succeeds; the first read returns ENETDOWN
//     and the socket works once the interface comes up. Listen on an index
//     that no longer exists fails with ENODEV.
//   - Frames this host sends out of the interface, from any socket, are never
//     delivered to a socket from Listen: the kernel copies outgoing frames
//     only to ETH_P_ALL sockets, and Listen binds to ethertype 0x88A2. So a
//     target does not see a local initiator's requests on the same NIC, nor
//     its own or another target's replies.
//
// Lookup, MTU, Listen, Rebind and WatchLinks act in the network namespace of
// the calling thread (normally the process's).
//
// So a serve loop logs and continues on Transient errors, and watches the
// interface to replace its socket when the interface is recreated; no amount
// of reading tells it that, since the old socket just stays silent. A loop in
// outline (the test TestServeLoopSurvivesRecreate runs this shape):
//
//	conn, _ := netconf.Listen(ifi, cfg)
//	var cur atomic.Pointer[packet.Conn] // read by the reader and the writers
//	cur.Store(conn)
//	w, _ := netconf.WatchLinks()
//	go func() { // watcher: replace the socket when name gets a new index
//		for {
//			ev, err := w.Next(ctx)
//			if ctx.Err() != nil {
//				return
//			}
//			if err == nil && ev.Name != name {
//				continue
//			}
//			// Our interface changed, or events were lost (ErrEventsLost).
//			old := cur.Load()
//			nc, ifi, err := netconf.Rebind(old, name, cfg)
//			if err != nil {
//				continue // gone for now; a later event brings it back
//			}
//			// ifi.MTU is the current MTU: advertise it from now on.
//			if nc != old {
//				cur.Store(nc)
//				old.Close() // wakes the reader, which picks up nc
//			}
//		}
//	}()
//	for { // reader (writers use cur.Load() and drop frames on Transient errors)
//		c := cur.Load()
//		n, from, err := c.ReadFrom(buf)
//		switch {
//		case ctx.Err() != nil:
//			return nil // shutdown: a ctx watcher set a past read deadline
//		case err != nil && cur.Load() != c:
//			continue // socket replaced under us
//		case netconf.Transient(err):
//			log.Warn("read", "err", err)
//			continue
//		case err != nil:
//			return err
//		}
//		handle(buf[:n], from)
//	}
//
// # Deadlines and shutdown
//
// A *packet.Conn is non-blocking and driven by the Go runtime's poller, so
// its deadlines are real: SetReadDeadline(time.Now()) from another goroutine
// makes a blocked ReadFrom return at once with an error matching
// os.ErrDeadlineExceeded (reset it with SetReadDeadline(time.Time{}) before
// reading again). context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
// turns context cancellation into that. Close also unblocks ReadFrom, with an
// error whose text is "use of closed file" (it matches neither net.ErrClosed
// nor os.ErrClosed); later calls fail with EBADF. Neither is Transient.
//
// On error, ReadFrom may return n == -1 (mdlayher/packet passes recvfrom's
// result through): look at err before n.
package netconf
