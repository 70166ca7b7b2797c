// Package reload keeps the engine in service in step with its
// configuration file: each load is read, parsed, validated and compiled in
// full into a new engine without side effects; only then is it committed:
// it starts its new issuers' key fetches and key file watchers, is swapped
// in atomically, and the old engine's unused issuers and watchers are
// stopped. A configuration that fails at any step is rejected
// with its errors logged and counted, and the last good one keeps serving.
// Loads are triggered by Watch: a change of the file's content (polled, so
// the symlink swap Kubernetes uses for mounted ConfigMaps is seen like any
// edit) or a SIGHUP.
package reload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
)

// Source produces the configuration text and its name (a path, or a label
// for an embedded configuration).
type Source func() (name string, data []byte, err error)

// FileSource reads path on every load (following symlinks).
func FileSource(path string) Source {
	return func() (string, []byte, error) {
		data, err := config.ReadBounded(path, config.MaxFileSize)
		if err != nil {
			return path, nil, fmt.Errorf("config: %w", err)
		}
		return path, data, nil
	}
}

// Recorder is told the outcome of every load (metrics).
type Recorder interface {
	Reloaded(ok bool, hash string, at time.Time)
}

// Reloader builds engines from a Source into a Holder.
type Reloader struct {
	Source Source
	// Lookup resolves ${NAME} in the configuration (os.LookupEnv).
	Lookup func(string) (string, bool)
	Holder *decision.Holder
	// Build is the template for every build; its Previous is set to the
	// engine in service, so unchanged issuers and caches carry over.
	Build decision.Options
	// Recorder, when set, counts loads.
	Recorder Recorder
	Log      *slog.Logger
	// ReadyTimeout bounds how long a new engine may take to load the keys
	// of issuers it adds before it is swapped in anyway (default 10s).
	ReadyTimeout time.Duration

	mu   sync.Mutex
	hash string // of the configuration in service (and its key files)
	// inputs are files the configuration in service reads when built (the
	// signed context's keys): their content is part of its hash, so a
	// rotated Secret reloads like an edited configuration.
	inputs []string
	failed string // of the last rejected content, not retried until it changes
}

// ErrUnchanged is returned by Reload when the content has not changed.
var ErrUnchanged = errors.New("configuration unchanged")

// Reload loads the source once if its content changed since the last
// load (good or rejected). ctx scopes the engine's background work (the
// process lifetime, not one request).
func (r *Reloader) Reload(ctx context.Context) error { return r.reload(ctx, false) }

// ReloadNow loads the source even if its content did not change: the
// environment it expands may have (SIGHUP).
func (r *Reloader) ReloadNow(ctx context.Context) error { return r.reload(ctx, true) }

func (r *Reloader) reload(ctx context.Context, force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	name, data, err := r.Source()
	if err != nil {
		r.reject(err)
		return err
	}
	hash := contentHash(data, r.inputs)
	if !force && (hash == r.hash || hash == r.failed) {
		return ErrUnchanged
	}
	lookup := r.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	f, err := config.Parse(name, data, lookup)
	if err != nil {
		r.failed = hash
		r.reject(err)
		return err
	}
	opts := r.Build
	old := r.Holder.Load()
	opts.Previous = old
	eng, err := decision.Build(f, opts)
	if err != nil {
		// The build started nothing and changed nothing: drop it.
		r.failed = hash
		r.reject(err)
		return err
	}
	eng.Start(ctx)
	if old != nil {
		// Issuers the old engine already used are ready; new ones get a
		// moment to fetch their keys, so tokens they sign are not refused
		// as "unavailable" the instant the new policy takes over.
		timeout := r.ReadyTimeout
		if timeout == 0 {
			timeout = 10 * time.Second
		}
		deadline := time.Now().Add(timeout)
		for !eng.Ready() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		if !eng.Ready() {
			r.log().Warn("swapping in the new configuration before all its issuers have keys", "config", name)
		}
	}
	r.Holder.Store(eng)
	if old != nil {
		old.Retire(eng)
	}
	r.inputs = inputsOf(f)
	r.hash, r.failed = contentHash(data, r.inputs), ""
	if r.Recorder != nil {
		r.Recorder.Reloaded(true, hash, time.Now())
	}
	r.log().Info("configuration loaded", "config", name, "sha256", hash, "policies", len(eng.Policies()))
	return nil
}

// inputsOf lists the files a configuration reads when built, besides
// itself, whose change must reload it.
func inputsOf(f *config.File) []string {
	if f.Context != nil && f.Context.Keys != "" {
		return []string{f.Context.Keys}
	}
	return nil
}

// contentHash identifies a configuration's text and the content of its
// input files (an unreadable one counts as its error text, so it changes
// the hash too).
func contentHash(data []byte, inputs []string) string {
	h := sha256.New()
	h.Write(data)
	for _, p := range inputs {
		b, err := config.ReadBounded(p, config.MaxFileSize)
		if err != nil {
			b = []byte(err.Error())
		}
		sum := sha256.Sum256(b)
		h.Write([]byte{0})
		h.Write(sum[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func (r *Reloader) reject(err error) {
	if r.Recorder != nil {
		r.Recorder.Reloaded(false, "", time.Now())
	}
	var list config.ErrorList
	if errors.As(err, &list) {
		msgs := make([]string, len(list))
		for i, e := range list {
			msgs[i] = e.Error()
		}
		r.log().Error("configuration rejected; the last good one keeps serving", "errors", msgs)
		return
	}
	r.log().Error("configuration rejected; the last good one keeps serving", "error", err)
}

func (r *Reloader) log() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}

// Watch reloads when the source's content changes (checked every
// interval) or a signal arrives on hup, until ctx ends.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration, hup <-chan os.Signal) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-hup:
			r.log().Info("SIGHUP: reloading the configuration")
			_ = r.ReloadNow(ctx) // errors are logged and counted
			continue
		}
		_ = r.Reload(ctx)
	}
}
