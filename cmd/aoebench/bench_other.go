//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
)

// bench needs AF_PACKET sockets: Linux only.
func bench(ctx context.Context, o *options, logw io.Writer) (*Result, error) {
	return nil, errors.New("aoebench runs on Linux only (AF_PACKET sockets)")
}
