// Command aoebench is a load generator for ATA over Ethernet targets, and
// the reporting half of hack/bench.
//
//	aoebench -i netif [-w window] [--bs 4k|frame] [--rw read|write|verify]
//	         [--pattern random|seq] [-d duration] [--pid target-pid] [--json] shelf slot
//	aoebench report [--svg file] [--goal spec]... results.jsonl...
//
// It finds the target with the project's initiator (Query Config, IDENTIFY
// DEVICE), then measures from one thread on its own AF_PACKET socket: a
// fixed window of frames in flight, each in a slot found by its tag,
// request frames built once and patched in place, batches of frames per
// sendmmsg and recvmmsg, resends with a new tag after a timeout, no
// allocation per frame. It reports IOPS, MB/s, frames/s, latency
// percentiles, retransmits and errors, and with --pid the target's CPU time
// per million frames. Run aoebench --help for the definitions.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
