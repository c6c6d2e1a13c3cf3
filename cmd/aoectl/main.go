// Command aoectl talks to ATA over Ethernet targets from userspace: it
// discovers them, identifies them, reads and writes sectors, and edits their
// config string, Mac Mask List and reservation.
//
// Usage:
//
//	aoectl -i netif [-t timeout] command [args]
//
// Run aoectl -h for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second ^C kills
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
