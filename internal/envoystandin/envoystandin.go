// Package envoystandin is a TEST STAND-IN FOR ENVOY, not a proxy to deploy:
// no Envoy binary can be installed on the machines the tests run on, so the
// end-to-end tests put this small reverse proxy in front of the LangGraph
// server. It calls langgate's gRPC Check exactly as Envoy's ext_authz HTTP
// filter does (see docs/deploy.md and ENVOY.md):
//
//   - the CheckRequest carries the method, the raw :path (query included,
//     nothing decoded), the host, lower-case headers with pseudo-headers and
//     repeated headers joined with ",", and the context extensions;
//   - with_request_body: the body is buffered up to MaxRequestBytes; a larger
//     one is either cut and marked x-envoy-auth-partial-body: true
//     (AllowPartialMessage) or answered 413; PackAsBytes sends raw_body;
//   - only status OK allows; ok_response.headers are applied by their
//     append_action, then headers_to_remove (pseudo-headers and host are
//     never removed);
//   - any other status is a denial, with denied_response's status (403 when
//     unset), headers and body; a failed RPC is StatusOnError (403), since
//     failure_mode_allow is false.
//
// It lives under internal/ so that nothing outside this module can import it.
package envoystandin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Config mirrors the ext_authz filter settings the stand-in honours.
type Config struct {
	// Upstream is the protected server.
	Upstream *url.URL
	// Client calls langgate's Authorization service.
	Client authv3.AuthorizationClient
	// Timeout is the grpc_service timeout (Envoy's default is 200 ms).
	Timeout time.Duration
	// WithRequestBody enables body forwarding, with its three settings.
	WithRequestBody     bool
	MaxRequestBytes     int
	AllowPartialMessage bool
	PackAsBytes         bool
	// ContextExtensions are the route's check_settings.context_extensions.
	ContextExtensions map[string]string
	// StatusOnError is the status when the Check RPC fails (403).
	StatusOnError int
}

// Proxy is the stand-in: an http.Handler that authorizes, then forwards.
type Proxy struct {
	cfg   Config
	proxy *httputil.ReverseProxy
}

// New builds a stand-in for cfg.
func New(cfg Config) *Proxy {
	if cfg.Timeout == 0 {
		cfg.Timeout = 200 * time.Millisecond
	}
	if cfg.StatusOnError == 0 {
		cfg.StatusOnError = http.StatusForbidden
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(cfg.Upstream)
			pr.Out.Host = pr.In.Host
		},
		FlushInterval: -1, // stream server-sent events as they come
	}
	return &Proxy{cfg: cfg, proxy: rp}
}

// ServeHTTP runs the ext_authz filter, then the router.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	partial := false
	if p.cfg.WithRequestBody && r.Body != nil {
		limit := p.cfg.MaxRequestBytes
		buf, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
		if err != nil {
			http.Error(w, "reading body", http.StatusBadRequest)
			return
		}
		rest := r.Body
		if len(buf) > limit {
			if !p.cfg.AllowPartialMessage {
				http.Error(w, "Payload Too Large", http.StatusRequestEntityTooLarge)
				return
			}
			body, partial = buf[:limit], true
		} else {
			body = buf
		}
		// The upstream still gets the whole body.
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(buf), rest))
	}

	headers := map[string]string{}
	for k, vs := range r.Header {
		if strings.EqualFold(k, "x-envoy-auth-partial-body") {
			continue // Envoy drops a client's copy
		}
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	if p.cfg.WithRequestBody && len(body) > 0 {
		// Envoy marks every body it buffered for the check.
		headers["x-envoy-auth-partial-body"] = fmt.Sprint(partial)
	}
	headers[":method"], headers[":path"], headers[":authority"], headers[":scheme"] = r.Method, r.RequestURI, r.Host, "http"
	if r.ContentLength > 0 {
		headers["content-length"] = fmt.Sprint(r.ContentLength)
	}
	httpReq := &authv3.AttributeContext_HttpRequest{
		Method: r.Method, Path: r.RequestURI, Host: r.Host, Scheme: "http", Protocol: r.Proto, Headers: headers,
		Size: r.ContentLength,
	}
	if p.cfg.WithRequestBody {
		if p.cfg.PackAsBytes {
			httpReq.RawBody = body
		} else {
			httpReq.Body = string(body)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.Timeout)
	defer cancel()
	resp, err := p.cfg.Client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: httpReq},
		ContextExtensions: p.cfg.ContextExtensions,
	}})
	if err != nil {
		w.WriteHeader(p.cfg.StatusOnError)
		return
	}
	if resp.GetStatus().GetCode() != 0 {
		denied(w, resp.GetDeniedResponse())
		return
	}
	ok := resp.GetOkResponse()
	for _, hv := range ok.GetHeaders() {
		apply(r.Header, hv)
	}
	for _, name := range ok.GetHeadersToRemove() {
		if strings.HasPrefix(name, ":") || strings.EqualFold(name, "host") {
			continue
		}
		r.Header.Del(name)
	}
	p.proxy.ServeHTTP(w, r)
}

// apply sets one header by its append_action, as Envoy does.
func apply(h http.Header, hv *corev3.HeaderValueOption) {
	k, v := hv.GetHeader().GetKey(), hv.GetHeader().GetValue()
	switch hv.GetAppendAction() {
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		h.Set(k, v)
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if h.Get(k) == "" {
			h.Set(k, v)
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if h.Get(k) != "" {
			h.Set(k, v)
		}
	default: // APPEND_IF_EXISTS_OR_ADD: a second copy, the behaviour langgate must avoid
		h.Add(k, v)
	}
}

func denied(w http.ResponseWriter, d *authv3.DeniedHttpResponse) {
	status := int(d.GetStatus().GetCode())
	if status == 0 {
		status = http.StatusForbidden
	}
	for _, hv := range d.GetHeaders() {
		apply(w.Header(), hv)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, d.GetBody())
}
