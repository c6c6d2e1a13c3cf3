package main

import (
	"context"

	"github.com/aoetarget/aoetarget/target"
)

// startMetrics serves the Prometheus metrics of d's exports at addr.
func startMetrics(ctx context.Context, addr string, d *daemon) (stop func(), err error) {
	return func() {}, nil
}

// handlerExtras returns the requests in flight and the initiators of h.
func handlerExtras(h *target.Handler) (int64, []initiatorStatus) {
	return 0, []initiatorStatus{}
}
