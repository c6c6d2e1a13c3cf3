package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aoetarget/aoetarget/blockstore"
	"github.com/aoetarget/aoetarget/config"
	"github.com/aoetarget/aoetarget/internal/state"
	"github.com/aoetarget/aoetarget/netconf"
	"github.com/aoetarget/aoetarget/target"
)

// observer learns of the exports that serve and stop (the metrics
// collector).
type observer interface {
	Add(export, address string, h *target.Handler)
	Remove(export string)
}

// env is what every export of a process shares.
type env struct {
	log      *slog.Logger
	stateDir string // "" keeps no state
	observer observer
	host     string
	// openStore opens the backing file; nil means blockstore.Open. Tests
	// replace it.
	openStore func(path string, o blockstore.Options) (*blockstore.File, error)
}

// Export states, as status shows them.
const (
	stateStarting = "starting"
	stateServing  = "serving"
	stateFailed   = "failed"
	stateStopping = "stopping"
)

// exportRunner runs one export: it opens its store and serves it until
// stopped. In the daemon, a failure to start (a missing file or
// interface) is retried every retryInterval.
type exportRunner struct {
	cfg    config.Export
	env    *env
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed when the runner has stopped
	ready  chan struct{} // closed when the first attempt serves or fails
	once   sync.Once

	mu      sync.Mutex // guards the fields below
	state   string
	err     error
	h       *target.Handler
	srv     *target.Server
	sectors uint64
	since   time.Time
}

// retryInterval is how long the daemon waits before it tries again to
// start an export that failed to start.
var retryInterval = 10 * time.Second

// startRunner starts serving e in the background.
func startRunner(ctx context.Context, e config.Export, en *env) *exportRunner {
	ctx, cancel := context.WithCancel(ctx)
	r := &exportRunner{
		cfg: e, env: en, cancel: cancel,
		log:   en.log.With("export", e.Name, "target", e.Address()),
		done:  make(chan struct{}),
		ready: make(chan struct{}),
		state: stateStarting,
		since: time.Now(),
	}
	go r.run(ctx)
	return r
}

func (r *exportRunner) run(ctx context.Context) {
	defer close(r.done)
	defer r.once.Do(func() { close(r.ready) })
	for {
		err := serveExport(ctx, r.cfg, r.env, r.log, r.serving)
		r.mu.Lock()
		r.h, r.srv = nil, nil
		if ctx.Err() != nil {
			r.mu.Unlock()
			return
		}
		if err == nil {
			err = errors.New("stopped serving")
		}
		r.state, r.err, r.since = stateFailed, err, time.Now()
		r.mu.Unlock()
		r.log.Error("export failed; retrying", "err", err, "retry_in", retryInterval)
		r.once.Do(func() { close(r.ready) })
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryInterval):
		}
	}
}

// serving is called once the export's sockets are bound and announced.
func (r *exportRunner) serving(h *target.Handler, srv *target.Server, sectors uint64) {
	r.mu.Lock()
	r.state, r.err, r.h, r.srv, r.sectors, r.since = stateServing, nil, h, srv, sectors, time.Now()
	r.mu.Unlock()
	r.once.Do(func() { close(r.ready) })
}

// stop stops the export and waits until it has.
func (r *exportRunner) stop() {
	r.mu.Lock()
	r.state = stateStopping
	r.mu.Unlock()
	r.cancel()
	<-r.done
}

// stuck reports a hung receive loop of a serving export.
func (r *exportRunner) stuck(limit time.Duration) error {
	r.mu.Lock()
	srv := r.srv
	r.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Stuck(limit)
}

// serveExport opens e's store and serves it until ctx is done. It calls
// serving once the sockets are bound and the announcement is sent. Errors
// that are the configuration's fault are usageErrors.
func serveExport(ctx context.Context, e config.Export, en *env, log *slog.Logger,
	serving func(*target.Handler, *target.Server, uint64)) error {
	open := en.openStore
	if open == nil {
		open = blockstore.Open
	}
	store, err := open(e.File, blockstore.Options{
		Offset:   e.Offset,
		Length:   e.Length,
		ReadOnly: e.ReadOnly,
		Direct:   e.Direct,
		Sync:     e.Sync,
	})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, blockstore.ErrWindow) ||
			errors.Is(err, blockstore.ErrTooSmall) {
			return usagef("%v", err)
		}
		return err
	}
	defer closeStore(store, e.IOTimeout, log)
	for _, name := range e.Interfaces {
		if _, err := netconf.Lookup(name); err != nil && !errors.Is(err, netconf.ErrLinkDown) {
			return usagef("%v", err)
		}
	}

	configured := target.State{ConfigString: []byte(e.ConfigString), Masks: e.MACs}
	start := configured
	var dir state.Dir
	if en.stateDir != "" {
		dir = state.Dir{Path: en.stateDir}
		saved, ok, err := dir.Load(e.Shelf, e.Slot)
		if err != nil {
			log.Warn("ignoring the saved AoE state", "err", err)
		}
		start = state.Merge(configured, saved, ok)
		if ok {
			log.Info("restored the AoE state", "config_string_bytes", len(start.ConfigString),
				"masks", len(start.Masks), "reserve", len(start.Reserve), "dir", en.stateDir)
		}
		rec := state.Record{State: start, Initial: configured}
		if !ok || !sameRecord(rec, saved) {
			if err := dir.Save(e.Shelf, e.Slot, rec); err != nil {
				log.Error("cannot save the AoE state", "err", err)
			}
		}
	}
	cfg := target.Config{
		Major:        e.Shelf,
		Minor:        e.Slot,
		BufferCount:  e.BufferCount,
		Writeback:    e.Writeback,
		Masks:        start.Masks,
		ConfigString: start.ConfigString,
		Hostname:     en.host,
		Firmware:     strings.SplitN(strings.TrimPrefix(version, "v"), "-", 2)[0],
		Logger:       log,
	}
	if en.stateDir != "" {
		// Called with the handler's state lock held, after the
		// request that changed the state and before its reply: the
		// change is on disk when the initiator learns of it.
		cfg.OnStateChange = func(s target.State) {
			if err := dir.Save(e.Shelf, e.Slot, state.Record{State: s, Initial: configured}); err != nil {
				log.Error("cannot save the AoE state", "err", err)
			}
		}
	}
	h, err := target.NewHandler(cfg, store)
	if err != nil {
		return usagef("%v", err)
	}
	if err := h.SetState(start); err != nil {
		return usagef("%v", err)
	}
	durability := "durable: each write is on stable storage before it is acknowledged"
	switch {
	case e.ReadOnly:
		durability = "read-only"
	case e.Writeback:
		durability = "WRITEBACK: writes are acknowledged before they are on stable storage; a power failure can lose them"
	}
	log.Info("exporting", "file", e.File, "sectors", store.Sectors(), "interfaces", strings.Join(e.Interfaces, ","),
		"offset", e.Offset, "direct", e.Direct, "sync", e.Sync, "bufcnt", e.BufferCount,
		"masks", len(start.Masks), "writes", durability, "io_timeout", e.IOTimeout, "queues", e.Queues, "version", version)
	srv := target.NewServer(h, target.ServerConfig{
		Interfaces:   e.Interfaces,
		Logger:       log,
		IOTimeout:    e.IOTimeout,
		Queues:       e.Queues,
		NoRing:       !e.IOUring,
		CachedWrites: e.CachedWrites,
	})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	select {
	case err := <-served:
		return err // failed to bind (or stopped before it did)
	case <-srv.Ready():
	}
	if en.observer != nil {
		en.observer.Add(e.Name, e.Address(), h)
		defer en.observer.Remove(e.Name)
	}
	if serving != nil {
		serving(h, srv, store.Sectors())
	}
	if err := <-served; err != nil {
		return err
	}
	st := h.Stats()
	log.Info("stopping", "replies", st.Verdicts[target.Reply].Load(),
		"reads", st.Reads.Load(), "writes", st.Writes.Load(), "flushes", st.Flushes.Load(), "merged", st.Merged.Load(), "ring_reads", st.ReadIOs.Load(), "ring_writes", st.WriteIOs.Load(), "stalled_io", st.StalledIO.Load(),
		"ata_errors", st.ATAErrors.Load(), "aoe_errors", st.AoEErrors.Load(), "io_errors", st.IOErrors.Load(),
		slog.Group("dropped", dropped(st)...))
	return nil
}

// closeStore closes the store, which flushes; on a stalled disk that could
// block for ever: it gives up after the I/O deadline.
func closeStore(store *blockstore.File, timeout time.Duration, log *slog.Logger) {
	closed := make(chan error, 1)
	go func() { closed <- store.Close() }()
	var expire <-chan time.Time
	if timeout > 0 {
		expire = time.After(timeout)
	}
	select {
	case err := <-closed:
		if err != nil {
			log.Error("closing the store failed", "err", err)
		}
	case <-expire:
		log.Error("the store did not close within the I/O deadline; exiting anyway", "waited", timeout)
	}
}

func sameRecord(a, b state.Record) bool {
	eq := func(x, y target.State) bool {
		return string(x.ConfigString) == string(y.ConfigString) && slices.Equal(x.Masks, y.Masks) && slices.Equal(x.Reserve, y.Reserve)
	}
	return eq(a.State, b.State) && eq(a.Initial, b.Initial)
}

// dropped lists the requests dropped without a reply, by reason.
func dropped(st *target.Stats) []any {
	var attrs []any
	for v := target.Verdict(0); v < target.Verdict(len(st.Verdicts)); v++ {
		if v != target.Reply {
			attrs = append(attrs, v.String(), st.Verdicts[v].Load())
		}
	}
	return attrs
}

// describe is one line about an export for logs and --check-config.
func describe(e config.Export) string {
	var b strings.Builder
	b.WriteString(e.Name)
	if e.Name != e.Address() {
		fmt.Fprintf(&b, " (%s)", e.Address())
	}
	fmt.Fprintf(&b, " %s on %s", e.File, strings.Join(e.Interfaces, ","))
	if e.Offset != 0 || e.Length != 0 {
		fmt.Fprintf(&b, ", sectors %d+%d", e.Offset, e.Length)
	}
	switch {
	case e.ReadOnly:
		b.WriteString(", read-only")
	case e.Writeback:
		b.WriteString(", WRITEBACK")
	default:
		b.WriteString(", durable writes")
	}
	if e.Direct {
		b.WriteString(", O_DIRECT")
	}
	if e.Sync {
		b.WriteString(", O_SYNC")
	}
	if len(e.MACs) > 0 {
		fmt.Fprintf(&b, ", %d MACs allowed", len(e.MACs))
	}
	fmt.Fprintf(&b, ", bufcnt %d", e.BufferCount)
	return b.String()
}
