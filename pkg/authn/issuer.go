package authn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/config"
)

// MaxDiscoveryBytes bounds a discovery document.
const MaxDiscoveryBytes = 1 << 20

// Backoff bounds for discovery and key fetches while an issuer has no keys.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// NewHTTPClient returns the bounded client used for discovery and key sets:
// connect, TLS and header timeouts, and an overall deadline, so a slow
// identity provider can never wedge a fetch.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
}

// Issuer is one trusted OIDC issuer's key source: discovery, its key set
// and the background loop that refreshes it. Policies that trust the issuer
// share it; their own checks (audiences, typ, mapping) live with them.
type Issuer struct {
	cfg    config.OIDCIssuer
	client *http.Client
	now    func() time.Time
	log    *slog.Logger

	// keys exists from the start (verifiers hold it); its URL is known once
	// discovery succeeds.
	keys *KeySet

	once   sync.Once
	cancel context.CancelFunc
}

// start runs the issuer's background loop once, until ctx ends or stop.
func (i *Issuer) start(ctx context.Context) {
	i.once.Do(func() {
		ctx, i.cancel = context.WithCancel(ctx)
		i.keys.setLife(ctx)
		go i.run(ctx)
	})
}

// stop ends the background loop (a reload dropped the issuer).
func (i *Issuer) stop() {
	i.once.Do(func() {}) // never start after a stop
	if i.cancel != nil {
		i.cancel()
	}
}

// verifyAlgs are the algorithms the shared key set parses; each policy's
// verifier narrows them to its own pins before the key set is asked.
var verifyAlgs = func() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(config.AsymmetricAlgorithms))
	for i, a := range config.AsymmetricAlgorithms {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}()

func newIssuer(cfg config.OIDCIssuer, client *http.Client, now func() time.Time, minRefetch time.Duration, log *slog.Logger) *Issuer {
	if cfg.UnknownKidRefetchInterval != nil && cfg.UnknownKidRefetchInterval.Duration > 0 {
		minRefetch = cfg.UnknownKidRefetchInterval.Duration
	}
	log = log.With("issuer", cfg.Issuer)
	return &Issuer{cfg: cfg, client: client, now: now, log: log,
		keys: newKeySet(client, verifyAlgs, minRefetch, now, log)}
}

// URL is the issuer's exact `iss`.
func (i *Issuer) URL() string { return i.cfg.Issuer }

// Ready reports whether the issuer has usable keys.
func (i *Issuer) Ready() bool { return i.keys.Loaded() }

// KeySet returns the issuer's key set.
func (i *Issuer) KeySet() *KeySet { return i.keys }

// run discovers the issuer (retrying with backoff while it is unreachable),
// fetches its keys (likewise), then refreshes them on schedule until ctx
// ends. A failed refresh keeps the keys held and is retried with backoff,
// never later than the regular schedule.
func (i *Issuer) run(ctx context.Context) {
	jwksURL := i.cfg.JWKSURL
	for backoff := minBackoff; jwksURL == ""; backoff = min(backoff*2, maxBackoff) {
		u, err := i.discover(ctx)
		if err == nil {
			jwksURL = u
			break
		}
		i.log.Warn("OIDC discovery failed; tokens from this issuer are refused until it succeeds", "error", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return
		}
	}
	ks := i.keys
	ks.setURL(jwksURL)
	for backoff := minBackoff; ; backoff = min(backoff*2, maxBackoff) {
		err := ks.refresh(ctx, true)
		if err == nil {
			i.log.Info("issuer ready", "jwks_url", jwksURL)
			break
		}
		if !sleep(ctx, backoff) {
			return
		}
	}
	for {
		every := i.refreshInterval()
		if !sleep(ctx, every) {
			return
		}
		for backoff := minBackoff; ks.refresh(ctx, true) != nil; backoff = min(backoff*2, maxBackoff, every) {
			if !sleep(ctx, backoff) {
				return
			}
		}
	}
}

// refreshInterval is the time until the next scheduled refresh: the
// freshness lifetime the key set's last response declared, bounded by
// min_refresh_interval and max_refresh_interval, else refresh_interval.
func (i *Issuer) refreshInterval() time.Duration {
	return refreshInterval(i.keys, i.cfg)
}

func refreshInterval(ks *KeySet, cfg config.OIDCIssuer) time.Duration {
	every := config.DefaultRefreshInterval
	if cfg.RefreshInterval != nil {
		every = cfg.RefreshInterval.Duration
	}
	lifetime, ok := ks.cacheLifetime()
	if !ok {
		return every
	}
	lo, hi := min(config.DefaultMinRefreshInterval, every), max(config.DefaultMaxRefreshInterval, every)
	if cfg.MinRefreshInterval != nil {
		lo = cfg.MinRefreshInterval.Duration
	}
	if cfg.MaxRefreshInterval != nil {
		hi = cfg.MaxRefreshInterval.Duration
	}
	return min(max(lifetime, lo), hi)
}

// NextRefresh is the interval the issuer will wait before its next
// scheduled key refresh, as of now.
func (i *Issuer) NextRefresh() time.Duration { return i.refreshInterval() }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// discover reads the issuer's discovery document with go-oidc (which
// requires the document's issuer to be exactly the one configured, OpenID
// Connect Discovery §4.3) and returns its jwks_uri, held to the same rule
// as a configured jwks_url. The document is bounded to MaxDiscoveryBytes.
func (i *Issuer) discover(ctx context.Context) (string, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, bounded(i.client, MaxDiscoveryBytes, "discovery document")), i.cfg.Issuer)
	if err != nil {
		var mismatch *oidc.IssuerMismatchError
		if errors.As(err, &mismatch) {
			return "", fmt.Errorf("discovery document names issuer %q, configured %q: %w", mismatch.Discovered, mismatch.Provided, err)
		}
		return "", fmt.Errorf("discovery: %s", clip(err.Error(), 512))
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil {
		return "", fmt.Errorf("discovery document: %w", err)
	}
	if msg := config.CheckURL(doc.JWKSURI); msg != "" {
		return "", fmt.Errorf("discovery document's jwks_uri %s", msg)
	}
	return doc.JWKSURI, nil
}

// clip bounds an error text that may quote a response body (go-oidc puts
// a failed discovery's body in its error).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// bounded returns a copy of client whose response bodies fail to read past
// limit bytes, for libraries that read a whole body.
func bounded(client *http.Client, limit int64, what string) *http.Client {
	c := *client
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = limitedTransport{rt: rt, limit: limit, what: what}
	return &c
}

type limitedTransport struct {
	rt    http.RoundTripper
	limit int64
	what  string
}

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, limit: t.limit, left: t.limit, what: t.what}
	return resp, nil
}

// limitedBody reads at most left bytes and then fails, so a reader that
// reads to EOF cannot be made to hold an unbounded document.
type limitedBody struct {
	rc          io.ReadCloser
	limit, left int64
	what        string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, fmt.Errorf("%s larger than %d bytes", b.what, b.limit)
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, fmt.Errorf("%s larger than %d bytes", b.what, b.limit)
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
