// Package netns provides test helpers for privileged integration tests that
// need real network interfaces: network namespaces created with iproute2, veth
// pairs between them, and a way to run Go code (and open sockets) inside a
// namespace.
//
// Every helper takes a testing.TB, uses random names and removes what it
// created with t.Cleanup. Tests call SkipUnlessRoot (New does it too), so they
// skip with a clear message when not run as root or when iproute2 is missing:
//
//	go test -c -race -o netconf.test ./netconf && sudo ./netconf.test -test.v
//
// The helpers only touch namespaces they created; the host's own interfaces
// are never changed.
package netns
