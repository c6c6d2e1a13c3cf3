//go:build !linux

package target

// mmsgConn batches frames on Linux only.
type mmsgConn struct{ ring *rxRing }

func newMmsgConn(conn any, batch int) *mmsgConn { return nil }

func (m *mmsgConn) recv(bufs [][]byte, lens []int, wait bool) (int, error) { panic("unreachable") }

func (m *mmsgConn) send(frames [][]byte) error { panic("unreachable") }
