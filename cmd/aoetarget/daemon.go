package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/aoetarget/aoetarget/config"
	"github.com/aoetarget/aoetarget/internal/sdnotify"
	"github.com/aoetarget/aoetarget/target"
)

// daemon runs a set of exports: those of a config file (re-read on
// SIGHUP), or the one export of the vblade-style command line.
type daemon struct {
	env    *env
	notify *sdnotify.Notifier
	level  *slog.LevelVar

	// configPath is the config file (empty: a fixed set of exports);
	// only limits the exports served to those named (--export).
	configPath string
	only       []string
	started    time.Time
	file       *config.File // as read at start: its process-wide keys are in force

	mu      sync.Mutex // guards the fields below
	runners []*exportRunner
	reloads int       // successful reloads
	lastErr error     // of the last reload, if it failed
	loaded  time.Time // when the configuration in force was read
}

// selectExports keeps the exports named in only (all when only is empty);
// a name in only that the file lacks is an error.
func selectExports(f *config.File, only []string) ([]config.Export, error) {
	if len(only) == 0 {
		return f.Exports, nil
	}
	var out []config.Export
	for _, name := range only {
		i := slices.IndexFunc(f.Exports, func(e config.Export) bool { return e.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%s: no export named %q", f.Path, name)
		}
		out = append(out, f.Exports[i])
	}
	return out, nil
}

// apply makes the running exports those of want: exports that did not
// change keep serving untouched; removed and changed ones stop first
// (releasing their files and addresses), then changed and added ones
// start. It waits until every new export serves or has failed.
func (d *daemon) apply(ctx context.Context, want []config.Export) (added, removed, changed, kept int) {
	d.mu.Lock()
	old := d.runners
	d.mu.Unlock()
	var next []*exportRunner
	var stopping []*exportRunner
	keep := make(map[string]*exportRunner)
	for _, r := range old {
		i := slices.IndexFunc(want, func(e config.Export) bool { return e.Name == r.cfg.Name })
		switch {
		case i < 0:
			removed++
			stopping = append(stopping, r)
		case !want[i].Same(r.cfg):
			changed++
			stopping = append(stopping, r)
		default:
			kept++
			keep[r.cfg.Name] = r
		}
	}
	var wg sync.WaitGroup
	for _, r := range stopping {
		r.log.Info("stopping export")
		wg.Add(1)
		go func() { defer wg.Done(); r.stop() }()
	}
	wg.Wait()
	var starting []*exportRunner
	for _, e := range want {
		if r, ok := keep[e.Name]; ok {
			next = append(next, r)
			continue
		}
		if !slices.ContainsFunc(old, func(r *exportRunner) bool { return r.cfg.Name == e.Name }) {
			added++
		}
		r := startRunner(ctx, e, d.env)
		next = append(next, r)
		starting = append(starting, r)
	}
	d.mu.Lock()
	d.runners = next
	d.mu.Unlock()
	for _, r := range starting {
		select {
		case <-r.ready:
		case <-ctx.Done():
		}
	}
	return added, removed, changed, kept
}

// reload re-reads the config file and applies it. An invalid file changes
// nothing: the old configuration keeps running.
func (d *daemon) reload(ctx context.Context) error {
	d.notify.Reloading()
	log := d.env.log
	log.Info("reloading", "config", d.configPath)
	f, err := config.Load(d.configPath)
	var want []config.Export
	if err == nil {
		want, err = selectExports(f, d.only)
	}
	if err != nil {
		d.mu.Lock()
		d.lastErr = err
		d.mu.Unlock()
		log.Error("reload failed; the running configuration stays", "err", err)
		d.notify.Ready(d.statusLine() + "; last reload failed: " + err.Error())
		return err
	}
	d.level.Set(f.LogLevel)
	if d.file != nil {
		for _, k := range []struct{ key, was, now string }{
			{"state_dir", d.file.StateDir, f.StateDir},
			{"control_socket", d.file.ControlSocket, f.ControlSocket},
			{"metrics_listen", d.file.MetricsListen, f.MetricsListen},
			{"log_format", d.file.LogFormat, f.LogFormat},
		} {
			if k.was != k.now {
				log.Warn("a process-wide setting changed; it takes effect at the next restart",
					"key", k.key, "before", k.was, "after", k.now)
			}
		}
	}
	added, removed, changed, kept := d.apply(ctx, want)
	d.mu.Lock()
	d.lastErr = nil
	d.reloads++
	d.loaded = time.Now()
	d.mu.Unlock()
	log.Info("reloaded", "added", added, "removed", removed, "changed", changed, "unchanged", kept)
	d.notify.Ready(d.statusLine())
	return nil
}

// statusLine summarises the exports for systemctl status.
func (d *daemon) statusLine() string {
	d.mu.Lock()
	runners := slices.Clone(d.runners)
	d.mu.Unlock()
	serving, failed := 0, 0
	for _, r := range runners {
		r.mu.Lock()
		switch r.state {
		case stateServing:
			serving++
		case stateFailed:
			failed++
		}
		r.mu.Unlock()
	}
	s := fmt.Sprintf("serving %d of %d exports", serving, len(runners))
	if failed > 0 {
		s += fmt.Sprintf(", %d failed (see the log or aoetarget status)", failed)
	}
	return s
}

// failed returns the first export that failed to start, with its error.
func (d *daemon) failed() (*exportRunner, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.runners {
		r.mu.Lock()
		st, err := r.state, r.err
		r.mu.Unlock()
		if st == stateFailed {
			return r, err
		}
	}
	return nil, nil
}

// stopAll stops every export.
func (d *daemon) stopAll() {
	d.mu.Lock()
	runners := d.runners
	d.runners = nil
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() { defer wg.Done(); r.stop() }()
	}
	wg.Wait()
}

// watchdog sends systemd's keep-alive every interval/2 as long as every
// serving export's receive loops are healthy; a hung loop stops the
// keep-alives, and systemd restarts the service.
func (d *daemon) watchdog(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	reported := false
	for {
		d.mu.Lock()
		runners := slices.Clone(d.runners)
		d.mu.Unlock()
		var stuck error
		for _, r := range runners {
			if err := r.stuck(interval / 2); err != nil {
				stuck = fmt.Errorf("export %s: %w", r.cfg.Name, err)
				break
			}
		}
		switch {
		case stuck == nil:
			d.notify.Watchdog()
			reported = false
		case !reported:
			d.env.log.Error("withholding the watchdog keep-alive: a receive loop is stuck", "err", stuck)
			reported = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// run serves until ctx is done. With a config file, SIGHUP reloads it.
// failFast (the one-export command line) returns the export's error when
// it cannot start, instead of retrying.
func (d *daemon) run(ctx context.Context, exports []config.Export, failFast bool) error {
	d.started = time.Now()
	d.loaded = d.started
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if failFast {
		// The command line's one export: serve it in this goroutine,
		// so that its errors end the program as before.
		e := exports[0]
		r := &exportRunner{cfg: e, env: d.env, log: d.env.log.With("target", e.Address()),
			done: make(chan struct{}), ready: make(chan struct{}), state: stateStarting, since: time.Now(), cancel: func() {}}
		d.mu.Lock()
		d.runners = []*exportRunner{r}
		d.mu.Unlock()
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if iv, err := sdnotify.WatchdogInterval(); err == nil {
			go d.watchdog(wctx, iv)
		}
		go func() {
			for {
				select {
				case <-wctx.Done():
					return
				case <-hup:
					d.env.log.Info("SIGHUP: nothing to reload (no --config)")
				}
			}
		}()
		err := serveExport(ctx, e, d.env, r.log, func(h *target.Handler, srv *target.Server, sectors uint64) {
			r.serving(h, srv, sectors)
			d.notify.Ready(fmt.Sprintf("serving %s", describe(e)))
		})
		d.notify.Stopping()
		return err
	}

	d.apply(ctx, exports)
	d.notify.Ready(d.statusLine())
	d.env.log.Info("ready", "status", d.statusLine())
	if iv, err := sdnotify.WatchdogInterval(); err == nil {
		go d.watchdog(ctx, iv)
	} else if !errors.Is(err, sdnotify.ErrNoWatchdog) {
		d.env.log.Warn("ignoring the watchdog setting", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			d.notify.Stopping()
			d.env.log.Info("stopping every export")
			d.stopAll()
			return nil
		case <-hup:
			if d.configPath != "" {
				d.reload(ctx)
			}
		}
	}
}
