package netconf

import (
	"errors"
	"net"
)

// A LinkEvent is one interface change reported by a LinkWatcher. It describes
// the interface after the change.
type LinkEvent struct {
	// Index and Name identify the interface. Match events by Name: a
	// recreated interface has the same name and a new index.
	Index int
	Name  string

	// Deleted is set when the interface was removed (or moved to another
	// network namespace). The other fields then describe it as it was.
	Deleted bool

	// Flags holds net.FlagUp (administratively up), net.FlagRunning
	// (operationally up, carrier present) and the other net.Flags bits.
	Flags net.Flags

	// MTU and HardwareAddr are the interface's current MTU and MAC, or
	// zero and nil if the kernel did not include them.
	MTU          int
	HardwareAddr net.HardwareAddr
}

// ErrEventsLost is returned (wrapped) by LinkWatcher.Next when the kernel
// dropped notifications because they were not read fast enough (ENOBUFS on the
// netlink socket). Some change may have been missed: look the interface up
// again (Rebind, MTU), then keep calling Next.
var ErrEventsLost = errors.New("netconf: link events lost")
