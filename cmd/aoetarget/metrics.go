package main

import (
	"context"
	"fmt"

	"github.com/aoetarget/aoetarget/metrics"
	"github.com/aoetarget/aoetarget/target"
)

// startMetrics serves the Prometheus metrics of d's exports at addr: the
// exports register with the collector as they start serving.
func startMetrics(ctx context.Context, addr string, d *daemon) (stop func(), err error) {
	c := metrics.NewCollector()
	ctx, cancel := context.WithCancel(ctx)
	bound, err := metrics.Serve(ctx, addr, metrics.Handler(c), d.env.log)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	d.env.observer = c
	d.env.log.Info("serving metrics", "url", fmt.Sprintf("http://%s/metrics", bound))
	return cancel, nil
}

// handlerExtras returns the requests in flight and the initiators of h.
func handlerExtras(h *target.Handler) (int64, []initiatorStatus) {
	ins := h.Initiators()
	out := make([]initiatorStatus, 0, len(ins))
	for _, in := range ins {
		is := initiatorStatus{
			MAC: metrics.InitiatorLabel(in.MAC), FirstSeen: in.FirstSeen, LastSeen: in.LastSeen,
			ReadBytes: in.ReadBytes, WriteBytes: in.WriteBytes,
			Errors: in.ATAErrors + in.AoEErrors,
		}
		for _, n := range in.Requests {
			is.Requests += n
		}
		for _, n := range in.Dropped {
			is.Dropped += n
		}
		out = append(out, is)
	}
	return h.InFlight(), out
}
