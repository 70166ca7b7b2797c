// Package httpauthz is the HTTP adapter: the authorization contracts of
// proxies that ask over plain HTTP — Envoy's ext_authz http_service, nginx
// auth_request and Traefik forwardAuth — translated to the same core
// decision as the gRPC adapter. Each proxy has its own endpoint, so the
// original method and path are read from exactly the place that proxy puts
// them and never from a header a client could have set for another proxy.
//
//	/envoy/<original path>   Envoy http_service with path_prefix: /envoy
//	/nginx                   nginx auth_request (X-Original-Method, X-Original-URI)
//	/traefik                 Traefik forwardAuth (X-Forwarded-Method, X-Forwarded-Uri)
//
// Allow is 200 with every header langgate owns (empty when it has no value,
// so a proxy that copies them overwrites or drops a client's copy); a denial
// is 401/403 with the JSON body, content-type and www-authenticate.
package httpauthz

import (
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"

	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/overload"
	"github.com/langgate/langgate/pkg/routes"
	"github.com/langgate/langgate/pkg/tracing"
)

// Endpoint prefixes.
const (
	EnvoyPrefix = "/envoy"
	NginxPath   = "/nginx"
	TraefikPath = "/traefik"
	// DenialHeader repeats a denial's JSON body, for proxies that cannot
	// relay the body of an authorization response (nginx).
	DenialHeader = "X-Langgate-Denial"
	// EnvoyRemoveHeader lists, on an allow at the Envoy endpoint, the
	// client-sent headers Envoy must strip before forwarding: x-langgate-*
	// headers langgate does not set, and the policy's strip list
	// (x-auth-scheme). Envoy's http_service applies it (the HTTP form of
	// CheckResponse.ok_response.headers_to_remove).
	EnvoyRemoveHeader = "X-Envoy-Auth-Headers-To-Remove"
)

// ownedHeaders are every header an allow answers with, always, so that a
// proxy copying them never leaves a client's copy in place.
var ownedHeaders = []string{
	decision.HeaderUserID, decision.HeaderUser, decision.HeaderPermissions,
	decision.HeaderResource, decision.HeaderAction, decision.HeaderFilters, decision.HeaderMetadata,
	decision.HeaderEvents, decision.HeaderContext,
}

// Handler serves the three endpoints for the engine in engines. With a
// tracer, each request to one of them is a span named after its method and
// endpoint ("GET /envoy"), the child of the trace context in its headers
// (Envoy's ext_authz span, or the one nginx or Traefik forwards).
func Handler(engines *decision.Holder, log *slog.Logger, tracer *tracing.Tracer) http.Handler {
	return HandlerWith(engines, log, tracer, Options{})
}

// Options bound what the HTTP transport holds for its callers.
type Options struct {
	// BodyBytesInFlight caps the request bodies held at once, across all
	// requests (DefaultBodyBytesInFlight when zero). A body that does not
	// fit is not read: rules that need it deny (fail closed).
	BodyBytesInFlight int64
	// Overload, when set, refuses every check with 503 (and closes its
	// connection) at overload.Critical, before anything of it is read
	// past its headers.
	Overload *overload.Guard
}

// DefaultBodyBytesInFlight is the default of Options.BodyBytesInFlight:
// 64 bodies of the largest size langgate reads.
const DefaultBodyBytesInFlight = 64 * (routes.MaxBodyBytes + 1)

// HandlerWith is Handler with options.
func HandlerWith(engines *decision.Holder, log *slog.Logger, tracer *tracing.Tracer, opts Options) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	if opts.BodyBytesInFlight <= 0 {
		opts.BodyBytesInFlight = DefaultBodyBytesInFlight
	}
	s := &server{engines: engines, log: log, budget: opts.BodyBytesInFlight}
	// Dispatch on the raw request target, not through http.ServeMux: the
	// mux would clean "/envoy/a/./b" or "//" and answer a redirect, when
	// the original path is langgate's to normalize (and to refuse).
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() {
			// The core recovers its own panics; this answers one in the
			// adapter like them (a 500 denial with an id, logged, counted).
			if rec := recover(); rec != nil {
				d := engines.Recovered(r.Context(), engines.Load(), &decision.Request{Method: r.Method, Path: r.RequestURI}, rec, start)
				w.Header().Set("X-Langgate-Decision-Id", d.ID)
				writeDenial(w, d)
			}
		}()
		if opts.Overload.RefuseNew() {
			overloaded(w)
			return
		}
		path, _, _ := strings.Cut(r.RequestURI, "?")
		var serve func(http.ResponseWriter, *http.Request)
		switch {
		case strings.HasPrefix(r.RequestURI, EnvoyPrefix+"/"):
			serve, path = s.envoy, EnvoyPrefix
		case path == NginxPath:
			serve = s.nginx
		case path == TraefikPath:
			serve = s.traefik
		default:
			http.NotFound(w, r)
			return
		}
		if tracer != nil {
			ctx, sp := tracer.Start(r.Context(), r.Method+" "+path, []attribute.KeyValue{
				attribute.String("http.request.method", r.Method), attribute.String("http.route", path),
			}, propagation.HeaderCarrier(r.Header))
			defer sp.End()
			r = r.WithContext(ctx)
		}
		serve(w, r)
	})
}

type server struct {
	engines *decision.Holder
	log     *slog.Logger
	// budget is the body bytes that may be held at once; inFlight what
	// the requests being decided hold.
	budget   int64
	inFlight atomic.Int64
}

// envoy: the check request carries the original method, the original path
// behind the prefix, the allowed headers, and the body when with_request_body
// is on (cut at max_request_bytes, then x-envoy-auth-partial-body: true).
func (s *server) envoy(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.RequestURI, EnvoyPrefix)
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	req := baseRequest(r, r.Method, path)
	defer s.lazyBody(r, req).release()
	d := s.decide(w, r, req)
	if d == nil {
		return
	}
	if len(d.RemoveHeaders) > 0 {
		names := slices.Clone(d.RemoveHeaders)
		slices.Sort(names)
		w.Header().Set(EnvoyRemoveHeader, strings.Join(names, ","))
	}
	w.WriteHeader(http.StatusOK)
}

// forwardAuth is a proxy that puts the original method, URI and host in
// headers of its own and asks with a request of its own.
type forwardAuth struct {
	name                                string
	methodHeader, uriHeader, hostHeader string
	hint                                string // how to fix a request that lacks them
	// body: the proxy can forward the client's body; when false it never
	// does, and rules that need the body fail closed.
	body bool
}

var (
	// nginx auth_request sends a body-less GET; the original method and
	// URI come from the headers the nginx configuration sets.
	nginxAuth = forwardAuth{name: "nginx", methodHeader: "X-Original-Method", uriHeader: "X-Original-URI", hostHeader: "X-Original-Host",
		hint: " (proxy_set_header them in the auth location)"}
	// Traefik forwardAuth copies the client's headers and adds
	// X-Forwarded-Method/-Uri/-Host; with forwardBody the body comes along.
	traefikAuth = forwardAuth{name: "traefik", methodHeader: "X-Forwarded-Method", uriHeader: "X-Forwarded-Uri", hostHeader: "X-Forwarded-Host",
		body: true}
)

func (s *server) nginx(w http.ResponseWriter, r *http.Request)   { s.forward(nginxAuth, w, r) }
func (s *server) traefik(w http.ResponseWriter, r *http.Request) { s.forward(traefikAuth, w, r) }

// forward decides a forward-auth request. A check request that lacks the
// original method or URI is answered 403 and logged.
func (s *server) forward(p forwardAuth, w http.ResponseWriter, r *http.Request) {
	method, uri := r.Header.Get(p.methodHeader), r.Header.Get(p.uriHeader)
	if method == "" || uri == "" {
		s.misconfigured(w, p.name+": "+p.methodHeader+" and "+p.uriHeader+" are required"+p.hint)
		return
	}
	req := baseRequest(r, method, uri)
	if host := r.Header.Get(p.hostHeader); host != "" {
		req.Headers[":authority"] = host
	} else {
		// The check request's own Host is langgate's: without the proxy's
		// host header there is no client host to select a policy by.
		delete(req.Headers, ":authority")
	}
	if p.body {
		defer s.lazyBody(r, req).release()
	} else {
		req.BodyUnavailable = true
		delete(req.Headers, "content-length") // the check request's, not the client's
	}
	if s.decide(w, r, req) != nil {
		w.WriteHeader(http.StatusOK)
	}
}

func baseRequest(r *http.Request, method, path string) *decision.Request {
	h := make(map[string]string, len(r.Header)+3)
	for k, vs := range r.Header {
		h[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	h[":method"], h[":path"], h[":authority"] = method, path, r.Host
	return &decision.Request{Method: method, Path: path, Headers: h}
}

// lazyBody arranges for the check request's body to be read only when
// the core asks for it (an authenticated caller, a route whose rules read
// the body), at most MaxBodyBytes+1 of it (more marks it partial: rules
// that need it then fail closed) and only while the bodies held stay
// within the budget. release, run when the request is answered, gives
// back what the body held.
func (s *server) lazyBody(r *http.Request, req *decision.Request) *bodyLoad {
	// The check request's content-length is its own, not the client's: the
	// core then never takes an empty body for a complete one.
	req.BodyLengthUnknown = true
	b := &bodyLoad{s: s}
	req.LoadBody = func(req *decision.Request) {
		want := int64(routes.MaxBodyBytes + 1)
		if r.ContentLength >= 0 && r.ContentLength < want {
			want = r.ContentLength + 1
		}
		if s.inFlight.Add(want) > s.budget {
			s.inFlight.Add(-want)
			s.log.Warn("request bodies in flight are at their limit; deciding without this one", "limit_bytes", s.budget)
			req.BodyUnavailable = true
			return
		}
		b.held = want
		body, err := io.ReadAll(io.LimitReader(r.Body, want))
		if err != nil {
			// A client that stalls past the read timeout, or goes away.
			req.BodyUnavailable = true
			return
		}
		if len(body) > routes.MaxBodyBytes {
			body, req.BodyPartial = body[:routes.MaxBodyBytes], true
		}
		req.Body = body
	}
	return b
}

// bodyLoad is what a request's lazily read body holds of the budget.
type bodyLoad struct {
	s    *server
	held int64
}

func (b *bodyLoad) release() {
	if b.held > 0 {
		b.s.inFlight.Add(-b.held)
	}
}

// decide answers a denial in full and returns nil; on an allow it sets
// every owned header and returns the decision, leaving the caller to add
// its proxy's headers and write the 200.
func (s *server) decide(w http.ResponseWriter, r *http.Request, req *decision.Request) *decision.Decision {
	d := s.engines.DecideWith(r.Context(), req, decision.DecideOptions{HeadersOnly: true})
	w.Header().Set("X-Langgate-Decision-Id", d.ID)
	if req.LoadBody != nil && (r.ContentLength > 0 || len(r.TransferEncoding) > 0) {
		// A body langgate never needed: close the connection after the
		// answer rather than wait for the rest of it (a client stalling a
		// body holds nothing).
		w.Header().Set("Connection", "close")
	}
	if d.Outcome == decision.Served {
		// A check answered with 200 is an allow to every HTTP-mode proxy:
		// langgate cannot serve a document of its own here. The admin port
		// serves it (route the path there).
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"detail":"Not Found: the admin port serves this document in HTTP mode"}`)
		return nil
	}
	if !d.Allow() {
		writeDenial(w, d)
		return nil
	}
	for _, name := range ownedHeaders {
		w.Header()[http.CanonicalHeaderKey(name)] = []string{""}
	}
	for _, hd := range d.Headers {
		w.Header().Set(hd.Name, hd.Value)
	}
	return d
}

func writeDenial(w http.ResponseWriter, d *decision.Decision) {
	for _, hd := range d.ResponseHeaders {
		w.Header().Set(hd.Name, hd.Value)
	}
	// nginx drops an auth subrequest's body; it can still return this
	// header's value (ASCII JSON) as its own error body.
	w.Header().Set(DenialHeader, d.Body)
	w.WriteHeader(d.Status)
	_, _ = io.WriteString(w, d.Body) //nolint:gosec // ASCII-escaped JSON served as application/json, not HTML
}

// overloaded answers a check refused for memory pressure: a 503 that every
// proxy treats as a denial, and the connection closed so that its buffers
// go too.
func overloaded(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Retry-After", "1")
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, `{"detail":"Service overloaded"}`)
}

// misconfigured answers a check request the proxy built wrongly: 403, so
// that even a proxy that turns unknown statuses into success denies.
func (s *server) misconfigured(w http.ResponseWriter, why string) {
	s.log.Error("malformed authorization request from the proxy; denying", "reason", why)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_, _ = io.WriteString(w, `{"detail":"Forbidden"}`)
}
