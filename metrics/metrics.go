// Package metrics exposes the counters of running exports (target.Handler)
// to Prometheus: per export, and per export and initiator MAC.
//
// The handlers count with their own atomic counters on the per-frame path
// (see target.InitiatorStats); the Collector reads snapshots of them at
// each scrape, so serving metrics costs the data path nothing.
//
// Metrics (every one has the labels export, the configured name, and
// target, the AoE address such as "e1.0"; the per-initiator ones add
// initiator, a MAC address or "other": MACs beyond target.MaxInitiators,
// or frames without a source):
//
//	aoetarget_requests_total{initiator,command}            answered requests by AoE command
//	aoetarget_ata_commands_total{initiator,op}             ATA commands run, by op
//	aoetarget_read_bytes_total{initiator}                  data read
//	aoetarget_written_bytes_total{initiator}               data written
//	aoetarget_ata_errors_total{initiator,op}               replies with the ATA ERR bit
//	aoetarget_aoe_errors_total{initiator,code}             replies with an AoE error
//	aoetarget_dropped_total{initiator,reason}              frames dropped without a reply
//	aoetarget_reserved_refusals_total{initiator}           requests refused by another's reservation
//	aoetarget_request_duration_seconds{initiator,op}       receipt to reply (histogram)
//	aoetarget_initiator_last_seen_timestamp_seconds{initiator}
//	aoetarget_in_flight_requests                           received, not answered yet
//	aoetarget_flushes_total                                store flushes
//	aoetarget_group_commit_writes                          writes acknowledged per flush (histogram)
//	aoetarget_merged_requests_total                        requests merged into the I/O before them
//	aoetarget_stalled_requests_total                       requests failed because the store stalled
//	aoetarget_store_errors_total                           store read/write/flush failures
//	aoetarget_export_sectors                               size in 512-byte sectors
//	aoetarget_export_info{read_only,writeback}             1
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aoetarget/aoetarget/aoe"
	"github.com/aoetarget/aoetarget/target"
)

// OtherInitiator is the initiator label of the counters of MACs beyond
// the handler's table (and of frames without a source).
const OtherInitiator = "other"

// Collector is a prometheus.Collector of the counters of the exports added
// to it. It is safe for concurrent use.
type Collector struct {
	mu      sync.Mutex
	exports map[string][]exportEntry // by name; the last is collected (see Add)
}

type exportEntry struct {
	address string
	h       *target.Handler
}

// NewCollector returns a Collector without exports.
func NewCollector() *Collector {
	return &Collector{exports: make(map[string][]exportEntry)}
}

// Add starts collecting the counters of h, which serves the export named
// export at address (such as "e1.0"). Add and Remove pair up: if an export
// of the same name is added again before it was removed (a reload
// restarted it and the old one is still stopping), the newest is
// collected, and the next Remove of that name drops the oldest.
func (c *Collector) Add(export, address string, h *target.Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exports[export] = append(c.exports[export], exportEntry{address: address, h: h})
}

// Remove stops collecting the export named export (the oldest added, if
// it was added more than once). Removing an unknown name does nothing.
func (c *Collector) Remove(export string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch l := c.exports[export]; len(l) {
	case 0:
	case 1:
		delete(c.exports, export)
	default:
		c.exports[export] = slices.Delete(l, 0, 1)
	}
}

// desc makes a metric description with the export labels and more.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("aoetarget_"+name, help, append([]string{"export", "target"}, labels...), nil)
}

var (
	requestsDesc   = desc("requests_total", "Requests answered, by AoE command (with or without an error).", "initiator", "command")
	ataDesc        = desc("ata_commands_total", "ATA commands run, by op.", "initiator", "op")
	readDesc       = desc("read_bytes_total", "Data read by successful ATA reads.", "initiator")
	writtenDesc    = desc("written_bytes_total", "Data written by successful ATA writes.", "initiator")
	ataErrorsDesc  = desc("ata_errors_total", "Replies with the ATA status ERR bit, by ATA op.", "initiator", "op")
	aoeErrorsDesc  = desc("aoe_errors_total", "Replies with an AoE error (E flag), by error code.", "initiator", "code")
	droppedDesc    = desc("dropped_total", "Request frames dropped without a reply, by reason.", "initiator", "reason")
	reservedDesc   = desc("reserved_refusals_total", "Requests refused because another initiator holds the reservation.", "initiator")
	durationDesc   = desc("request_duration_seconds", "Time from a request's receipt to its reply being handed to the socket.", "initiator", "op")
	lastSeenDesc   = desc("initiator_last_seen_timestamp_seconds", "When the latest frame from the initiator was received (Unix time).", "initiator")
	inFlightDesc   = desc("in_flight_requests", "Requests received and not answered yet.")
	flushesDesc    = desc("flushes_total", "Flushes of the store (fdatasync), for group commits and FLUSH CACHE commands.")
	commitDesc     = desc("group_commit_writes", "Writes acknowledged by each group-commit flush.")
	mergedDesc     = desc("merged_requests_total", "Reads and writes merged into the I/O of the request before them.")
	stalledDesc    = desc("stalled_requests_total", "Requests failed because the store stalled past the I/O deadline.")
	storeErrorDesc = desc("store_errors_total", "Store read, write and flush failures.")
	sectorsDesc    = desc("export_sectors", "Size of the export in 512-byte sectors.")
	infoDesc       = desc("export_info", "Facts about the export, as labels; the value is 1.", "read_only", "writeback")

	allDescs = []*prometheus.Desc{requestsDesc, ataDesc, readDesc, writtenDesc, ataErrorsDesc, aoeErrorsDesc, droppedDesc,
		reservedDesc, durationDesc, lastSeenDesc, inFlightDesc, flushesDesc, commitDesc, mergedDesc, stalledDesc,
		storeErrorDesc, sectorsDesc, infoDesc}
)

// Describe sends the descriptions of every metric the Collector makes.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect sends the current values of the exports' counters.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	type named struct {
		name string
		exportEntry
	}
	c.mu.Lock()
	list := make([]named, 0, len(c.exports))
	for name, l := range c.exports {
		list = append(list, named{name, l[len(l)-1]})
	}
	c.mu.Unlock()
	for _, e := range list {
		collectExport(ch, e.name, e.address, e.h)
	}
}

func collectExport(ch chan<- prometheus.Metric, name, address string, h *target.Handler) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{name, address}, labels...)...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{name, address}, labels...)...)
	}
	histogram := func(d *prometheus.Desc, hist target.Histogram, labels ...string) {
		buckets := make(map[float64]uint64, len(hist.Bounds))
		var cum uint64
		for i, b := range hist.Bounds {
			cum += hist.Counts[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(d, hist.Count, hist.Sum, buckets, append([]string{name, address}, labels...)...)
	}

	for _, in := range h.Initiators() {
		mac := InitiatorLabel(in.MAC)
		for i, n := range in.Requests {
			counter(requestsDesc, n, mac, target.AoECommandName(i))
		}
		for i, n := range in.ATA {
			counter(ataDesc, n, mac, target.ATAOpName(i))
		}
		counter(readDesc, in.ReadBytes, mac)
		counter(writtenDesc, in.WriteBytes, mac)
		for i, n := range in.ATAErrorsByOp {
			counter(ataErrorsDesc, n, mac, target.ATAOpName(i))
		}
		for i, n := range in.AoEErrorsByCode {
			counter(aoeErrorsDesc, n, mac, target.AoEErrorName(i))
		}
		for v := target.Reply + 1; v < target.NumVerdicts; v++ {
			counter(droppedDesc, in.Dropped[v], mac, v.String())
		}
		counter(reservedDesc, in.Reserved, mac)
		for i, l := range in.Latency {
			histogram(durationDesc, l, mac, target.LatencyOpName(i))
		}
		gauge(lastSeenDesc, float64(in.LastSeen.UnixNano())/1e9, mac)
	}

	st := h.Stats()
	gauge(inFlightDesc, float64(h.InFlight()))
	counter(flushesDesc, st.Flushes.Load())
	histogram(commitDesc, h.CommitSizes())
	counter(mergedDesc, st.Merged.Load())
	counter(stalledDesc, st.StalledIO.Load())
	counter(storeErrorDesc, st.IOErrors.Load())
	gauge(sectorsDesc, float64(h.Sectors()))
	gauge(infoDesc, 1, strconv.FormatBool(h.ReadOnly()), strconv.FormatBool(h.Writeback()))
}

// InitiatorLabel returns the initiator label of mac: its address, or
// OtherInitiator for the zero MAC (the handler's "other" entry).
func InitiatorLabel(mac aoe.MAC) string {
	if mac == (aoe.MAC{}) {
		return OtherInitiator
	}
	return mac.String()
}

// Handler returns the HTTP handler of the metrics exposition: c, with the
// Go runtime's and the process's metrics, in a registry of their own.
func Handler(c *Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// Serve listens on the TCP address addr ("127.0.0.1:9100", ":9100";
// port 0 picks one) and serves h at /metrics until ctx is done. It returns
// once it listens, with the address it is bound to, or at once with the
// error that kept it from listening (say, the address is in use). log
// (nil: discarded) gets the errors of serving.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (net.Addr, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><head><title>aoetarget</title></head><body><a href="/metrics">Metrics</a></body></html>`)
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "addr", ln.Addr().String(), "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	return ln.Addr(), nil
}
