package authn

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/langgate/langgate/pkg/config"
)

// Introspection bounds.
const (
	// MaxIntrospectionBytes bounds an introspection response.
	MaxIntrospectionBytes = 64 << 10
	// MaxConcurrentIntrospections bounds the requests in flight to one
	// endpoint: a flood of distinct opaque tokens queues (each caller
	// waiting no longer than its own deadline) instead of opening
	// connections without limit.
	MaxConcurrentIntrospections = 64
)

// inactive marks a negatively cached token.
var inactive = NewUser("-", "", nil, nil)

// Introspector checks opaque tokens at an OAuth 2.0 token introspection
// endpoint (RFC 7662): one request per token however many callers present
// it at once, active results cached (never past exp, at most cache_ttl),
// inactive ones for negative_cache_ttl, a bounded number of requests in
// flight.
type Introspector struct {
	cfg     *config.Introspection
	client  *http.Client
	now     func() time.Time
	log     *slog.Logger
	mapping *userMapping
	cache   *Cache // the section's verified-token cache
	neg     *Cache
	sem     chan struct{}

	mu       sync.Mutex
	inflight map[[sha256.Size]byte]*introCall

	requests, failures, inactiveN, coalesced atomic.Uint64
}

type introCall struct {
	done chan struct{}
	user *User
	err  *Error
}

func newIntrospector(cfg *config.Introspection, client *http.Client, now func() time.Time, log *slog.Logger, m *userMapping, cache *Cache) *Introspector {
	return &Introspector{cfg: cfg, client: client, now: now, log: log.With("introspection", cfg.URL), mapping: m, cache: cache,
		neg: NewCache(10_000, 4<<20, now), sem: make(chan struct{}, MaxConcurrentIntrospections), inflight: map[[sha256.Size]byte]*introCall{}}
}

// IntrospectionStats are an introspector's counters.
type IntrospectionStats struct {
	// Requests counts requests sent; Failures those that got no usable
	// answer (network, HTTP status, malformed response).
	Requests, Failures uint64
	// Inactive counts tokens the endpoint declared inactive.
	Inactive uint64
	// Coalesced counts callers that shared another caller's request.
	Coalesced uint64
	// NegativeHits counts tokens refused from the inactive cache.
	NegativeHits uint64
}

// Stats returns the counters.
func (in *Introspector) Stats() IntrospectionStats {
	return IntrospectionStats{Requests: in.requests.Load(), Failures: in.failures.Load(), Inactive: in.inactiveN.Load(),
		Coalesced: in.coalesced.Load(), NegativeHits: in.neg.Stats().Hits}
}

// authenticate resolves a token the verified-token cache did not hold.
func (in *Introspector) authenticate(ctx context.Context, token string, key [sha256.Size]byte) (*User, error) {
	if u, ok := in.neg.Get(key); ok && u == inactive {
		return nil, invalid("token is not active", nil)
	}
	in.mu.Lock()
	c := in.inflight[key]
	in.mu.Unlock()
	if c == nil {
		select {
		case in.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, &Error{Kind: KindUnavailable, Reason: "introspection busy", Err: ctx.Err()}
		}
		in.mu.Lock()
		if c = in.inflight[key]; c == nil {
			c = &introCall{done: make(chan struct{})}
			in.inflight[key] = c
			in.mu.Unlock()
			go in.run(token, key, c) //nolint:gosec // the request serves every caller of this token, so it must not end with the first one's context; Timeout bounds it
		} else {
			in.mu.Unlock()
			<-in.sem
			in.coalesced.Add(1)
		}
	} else {
		in.coalesced.Add(1)
	}
	select {
	case <-c.done:
		if c.err != nil {
			return nil, c.err
		}
		return c.user, nil
	case <-ctx.Done():
		return nil, &Error{Kind: KindUnavailable, Reason: "introspection timed out", Err: ctx.Err()}
	}
}

// run performs one introspection for every caller waiting on c, on a
// context of its own bounded by the configured timeout: a caller giving up
// does not waste the answer for the others (or for the next request).
func (in *Introspector) run(token string, key [sha256.Size]byte, c *introCall) {
	defer func() { <-in.sem }()
	ctx, cancel := context.WithTimeout(context.Background(), in.cfg.Timeout.Duration)
	defer cancel()
	u, exp, size, err := in.introspect(ctx, token)
	switch {
	case err == nil:
		if ttl := in.cfg.CacheTTL.Duration; ttl > 0 {
			until := in.now().Add(ttl)
			if !exp.IsZero() && exp.Before(until) {
				until = exp
			}
			in.cache.Put(key, u, until, size)
		}
	case err.Kind == KindInvalid && err.Reason == "token is not active":
		in.inactiveN.Add(1)
		if ttl := in.cfg.NegativeCacheTTL.Duration; ttl > 0 {
			in.neg.Put(key, inactive, in.now().Add(ttl), 0)
		}
	case err.Kind == KindUnavailable:
		in.failures.Add(1)
		in.log.Warn("token introspection failed", "error", err)
	}
	c.user, c.err = u, err
	in.mu.Lock()
	delete(in.inflight, key)
	in.mu.Unlock()
	close(c.done)
}

// introspect asks the endpoint about one token and builds its user; exp is
// the token's expiry when the response states one, size the response's.
func (in *Introspector) introspect(ctx context.Context, token string) (*User, time.Time, int, *Error) {
	in.requests.Add(1)
	unavailable := func(reason string, err error) (*User, time.Time, int, *Error) {
		return nil, time.Time{}, 0, &Error{Kind: KindUnavailable, Reason: reason, Err: err}
	}
	refuse := func(e *Error) (*User, time.Time, int, *Error) { return nil, time.Time{}, 0, e }
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	if in.cfg.AuthMethod == config.ClientSecretPost {
		form.Set("client_id", in.cfg.ClientID)
		form.Set("client_secret", in.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.cfg.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return unavailable("introspection failed", fmt.Errorf("building the request: %w", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if in.cfg.AuthMethod != config.ClientSecretPost {
		// RFC 6749 §2.3.1: form-encode the id and secret before Basic.
		req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret))
	}
	resp, err := in.client.Do(req)
	if err != nil {
		return unavailable("introspection endpoint unreachable", fmt.Errorf("POST %s: %w", in.cfg.URL, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxIntrospectionBytes))
		return unavailable("introspection failed", fmt.Errorf("POST %s: HTTP %d", in.cfg.URL, resp.StatusCode))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxIntrospectionBytes+1))
	if err != nil {
		return unavailable("introspection failed", fmt.Errorf("reading the response: %w", err))
	}
	if len(data) > MaxIntrospectionBytes {
		return unavailable("introspection failed", fmt.Errorf("response larger than %d bytes", MaxIntrospectionBytes))
	}
	var claims map[string]any
	if err := json.Unmarshal(data, &claims); err != nil || claims == nil {
		return unavailable("introspection failed", errors.Join(errors.New("the response is not a JSON object"), err))
	}
	// RFC 7662 §2.2: active is a required boolean; anything but true is
	// inactive.
	if active, _ := claims["active"].(bool); !active {
		return refuse(invalid("token is not active", nil))
	}
	exp, cerr := checkTimes(in.now(), config.DefaultLeeway, claims, false)
	if cerr != nil {
		return refuse(cerr)
	}
	if in.cfg.Issuer != "" {
		if iss, _ := claims["iss"].(string); iss != in.cfg.Issuer {
			return refuse(invalid("wrong issuer", nil))
		}
	}
	if len(in.cfg.Audiences) > 0 && !audienceMatches(claims["aud"], in.cfg.Audiences) {
		return refuse(invalid("wrong audience", nil))
	}
	if err := requireClaims(claims, in.cfg.RequiredClaims); err != nil {
		return refuse(err)
	}
	if in.mapping == nil {
		return refuse(invalid("user mapping failed", errors.New("no user mapping for introspected tokens")))
	}
	u, err := in.mapping.build(claims)
	if err != nil {
		return refuse(invalid("user mapping failed", err))
	}
	if in.mapping.dropClaims {
		return u, exp, 0, nil // the user holds no claims
	}
	return u, exp, len(data), nil
}
