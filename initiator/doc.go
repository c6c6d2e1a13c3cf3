// Package initiator implements a userspace ATA over Ethernet (AoEr11)
// initiator: it discovers targets with Query Config, issues ATA commands
// (IDENTIFY, READ/WRITE SECTORS EXT, FLUSH CACHE EXT) with several frames in
// flight and retransmission on timeout, and drives the Mac Mask List and
// Reserve/Release commands.
//
// A Client owns one net.PacketConn that carries whole Ethernet frames (an
// AF_PACKET socket from netconf in production, an in-memory pipe from
// initiatortest in unit tests). One reader goroutine dispatches replies by
// tag to the requests waiting for them, so a Client may be used by many
// goroutines at once.
package initiator
