package netconf

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Fanout joins conns, AF_PACKET sockets bound to the same interface and
// protocol, into a new PACKET_FANOUT group that spreads AoE requests among
// them with FanoutProgram, so that several receive loops (on several
// cores) share an interface. The kernel picks the group's id
// (PACKET_FANOUT_FLAG_UNIQUEID, Linux 4.16+): no other socket can join it
// by accident. A socket leaves the group when it is closed.
func Fanout(conns []syscall.Conn) error {
	if len(conns) < 2 {
		return nil
	}
	prog, err := FanoutProgram()
	if err != nil {
		return err
	}
	var id int
	for i, c := range conns {
		rc, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("netconf: fanout: %w", err)
		}
		var opErr error
		err = rc.Control(func(fd uintptr) {
			s := int(fd)
			if i == 0 {
				val := (unix.PACKET_FANOUT_CBPF | unix.PACKET_FANOUT_FLAG_UNIQUEID) << 16
				if opErr = unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_FANOUT, val); opErr != nil {
					opErr = fmt.Errorf("create group: %w", opErr)
					return
				}
				var got int
				if got, opErr = unix.GetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_FANOUT); opErr != nil {
					opErr = fmt.Errorf("read group id: %w", opErr)
					return
				}
				id = got & 0xffff
				filter := make([]unix.SockFilter, len(prog))
				for k, ins := range prog {
					filter[k] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
				}
				fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: unsafe.SliceData(filter)}
				if opErr = unix.SetsockoptSockFprog(s, unix.SOL_PACKET, unix.PACKET_FANOUT_DATA, &fprog); opErr != nil {
					opErr = fmt.Errorf("set steering program: %w", opErr)
				}
				return
			}
			if opErr = unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_FANOUT, unix.PACKET_FANOUT_CBPF<<16|id); opErr != nil {
				opErr = fmt.Errorf("join group %d: %w", id, opErr)
			}
		})
		if err = errors.Join(err, opErr); err != nil {
			return fmt.Errorf("netconf: fanout, socket %d of %d: %w", i+1, len(conns), err)
		}
	}
	return nil
}
