package decision

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
	langgatev1 "github.com/langgate/langgate/proto/langgate/v1"
)

// The headers langgate owns on the upstream request (the contract with the
// upstream, see docs/headers.md).
const (
	HeaderPrefix      = "x-langgate-"
	HeaderUserID      = "x-langgate-user-id"
	HeaderUser        = "x-langgate-user"
	HeaderPermissions = "x-langgate-permissions"
	HeaderResource    = "x-langgate-resource"
	HeaderAction      = "x-langgate-action"
	HeaderFilters     = "x-langgate-filters"
	HeaderMetadata    = "x-langgate-metadata"
	// HeaderEvents is every event langgate authorized for the request: a
	// JSON object from "resource:action" to {"filters": ...} and, for a
	// store event, "namespace_prefix" ({} when the path fires none). The upstream adapter refuses any event the
	// server fires that is not in it and applies each event's own filters,
	// so a route the table maps too narrowly (or not at all) can never run
	// an unauthorized event.
	HeaderEvents = "x-langgate-events"
	// HeaderContext carries the signed auth context: a compact JWS over
	// the request's langgate.v1.AuthContext (with a context section).
	HeaderContext = "x-langgate-context"
	// HeaderReason carries a short denial reason to the client when
	// explain.reason_header is on.
	HeaderReason = "x-langgate-reason"
)

// respond is the respond phase: an allow gets the upstream headers (the
// contract of docs/headers.md) and the list of client headers to strip; a
// denial gets its JSON body, content-type, the Bearer challenge of a 401
// and, with explain.reason_header, the reason.
func (e *Engine) respond(p *pass) {
	d := p.d
	switch d.Outcome {
	case Public:
		d.RemoveHeaders = p.pol.headersToRemove(p.req.Headers, nil)
		return
	case Served:
		return
	case Allowed:
		err := upstreamHeaders(d)
		if err == nil && e.signer != nil {
			err = e.signContext(p)
		}
		if err == nil {
			d.RemoveHeaders = p.pol.headersToRemove(p.req.Headers, d.Headers)
			return
		}
		d.deny(Denied, 403, "Forbidden", "encoding headers: "+err.Error())
	}
	renderDenial(d, e.reasonHeader)
	e.cors.apply(d, p.req.Headers["origin"])
}

// signContext adds x-langgate-context: what this decision authorized, for
// this request, signed.
func (e *Engine) signContext(p *pass) error {
	d := p.d
	query, err := routes.CanonicalQuery(p.target.RawQuery)
	if err != nil {
		return fmt.Errorf("the query: %w", err)
	}
	c := &langgatev1.AuthContext{
		Jti:    d.ID,
		Policy: d.Policy,
		Request: &langgatev1.RequestBinding{Method: p.req.Method, Path: d.Path, BodySha256: p.bodySHA256,
			Query: query},
		User: &langgatev1.User{
			Identity:     d.User.Identity,
			DisplayName:  d.User.DisplayName,
			Permissions:  d.User.Permissions,
			IsStudioUser: d.Studio,
		},
	}
	if len(d.User.Fields) > 0 {
		if c.User.Fields, err = structpb.NewStruct(d.User.Fields); err != nil {
			return fmt.Errorf("user fields: %w", err)
		}
	}
	for _, g := range d.Grants {
		resource, action, _ := strings.Cut(g.Event, ":")
		ev := &langgatev1.Event{Resource: resource, Action: action, NamespacePrefix: g.NamespacePrefix}
		if ev.Filters, err = structpb.NewStruct(orEmpty(g.Filters)); err != nil {
			return fmt.Errorf("filters of %s: %w", g.Event, err)
		}
		if len(g.Metadata) > 0 {
			if ev.Metadata, err = structpb.NewStruct(g.Metadata); err != nil {
				return fmt.Errorf("metadata of %s: %w", g.Event, err)
			}
		}
		if !g.AnyValue {
			for _, v := range g.Values {
				sv, err := structpb.NewStruct(v)
				if err != nil {
					return fmt.Errorf("values of %s: %w", g.Event, err)
				}
				ev.Values = append(ev.Values, sv)
			}
		}
		c.Events = append(c.Events, ev)
	}
	jws, err := e.signer.Sign(c)
	if err != nil {
		return fmt.Errorf("signing the context: %w", err)
	}
	d.Headers = append(d.Headers, Header{HeaderContext, jws})
	return nil
}

// corsRules are the configuration's cors section: which browser origins
// may read langgate's denials.
type corsRules struct {
	any         bool
	origins     map[string]bool
	credentials bool
}

func newCORSRules(origins []string, credentials bool) *corsRules {
	c := &corsRules{origins: map[string]bool{}, credentials: credentials}
	for _, o := range origins {
		if o == "*" {
			c.any = true
		} else {
			c.origins[o] = true
		}
	}
	return c
}

// apply adds the CORS response headers to a denial for a request from an
// allowed origin, so the browser lets the app read the status and detail.
func (c *corsRules) apply(d *Decision, origin string) {
	if c == nil || origin == "" || !(c.any || c.origins[origin]) {
		return
	}
	allow := origin
	if c.any && !c.credentials {
		allow = "*"
	}
	d.ResponseHeaders = append(d.ResponseHeaders,
		Header{Name: "access-control-allow-origin", Value: allow},
		Header{Name: "access-control-expose-headers", Value: "www-authenticate, x-langgate-decision-id, " + HeaderReason},
		Header{Name: "vary", Value: "Origin"})
	if c.credentials {
		d.ResponseHeaders = append(d.ResponseHeaders, Header{Name: "access-control-allow-credentials", Value: "true"})
	}
}

// upstreamHeaders sets the headers of an allowed decision.
func upstreamHeaders(d *Decision) error {
	u := d.User
	userJSON, perms, err1 := u.HeaderJSON(asciiJSON)
	if d.Studio && err1 == nil {
		// A Studio user, as LangGraph's StudioUser and is_studio_user()
		// know it (kind "StudioUser"); encoded per request, since the
		// cached JSON is the plain user's.
		userJSON, err1 = asciiJSON(policy.StudioView(u))
	}
	var filters, metadata, events string
	var err2 error
	if m := d.memo; m != nil {
		// One event, a pure handler: encoded on the user's first such
		// request, but for the values this request binds.
		filters, metadata, events, err2 = m.filtersJSON, m.metadataJSON, d.memoEvents, m.err
		if len(d.Grants) == 1 && err2 == nil {
			var vals string
			if vals, err2 = valuesJSON(&d.Grants[0]); vals != "" {
				events = events[:len(events)-2] + `,"values":` + vals + `}}`
			}
		}
	} else {
		var e1, e2, e3 error
		filters, e1 = asciiJSON(orEmpty(d.Filters))
		metadata, e2 = asciiJSON(orEmpty(d.Metadata))
		events, e3 = eventsJSON(d.Grants, d.Filters, filters)
		err2 = errors.Join(e1, e2, e3)
	}
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	d.Headers = []Header{
		{HeaderUserID, u.Identity},
		{HeaderUser, userJSON},
		{HeaderPermissions, perms},
		{HeaderFilters, filters},
		{HeaderMetadata, metadata},
	}
	if len(d.Events) > 0 {
		d.Headers = append(d.Headers, Header{HeaderResource, d.Events[0].Resource}, Header{HeaderAction, d.Events[0].Action})
	}
	d.Headers = append(d.Headers, Header{HeaderEvents, events})
	return nil
}

// eventsJSON is the x-langgate-events value: an object from each granted
// event ("resource:action", in firing order) to what the upstream applies
// to it: {"filters": {...}} ({} when none) and, for a store event whose
// handler sets one, "namespace_prefix": [...]. Event names are validated
// words, so only the parts need encoding.
// encoded is the JSON of merged, already made for x-langgate-filters: a
// grant holding that very map (the single-event case) reuses it.
func eventsJSON(gs []Grant, merged map[string]any, encoded string) (string, error) {
	if len(gs) == 0 {
		return "{}", nil
	}
	var b strings.Builder
	b.Grow(len(gs) * (32 + len(encoded)))
	b.WriteByte('{')
	for i, g := range gs {
		if i > 0 {
			b.WriteByte(',')
		}
		f := encoded
		if !sameMap(g.Filters, merged) {
			f = ""
		}
		part, err := grantJSON(g, f)
		if err != nil {
			return "", err
		}
		b.WriteString(`"` + g.Event + `":`)
		b.WriteString(part)
	}
	b.WriteByte('}')
	return b.String(), nil
}

// grantJSON is one event's part of x-langgate-events: {"filters": ...}
// and its namespace_prefix when it has one. filters is the filters' JSON
// when the caller has it ("" to encode g.Filters).
func grantJSON(g Grant, filters string) (string, error) {
	if filters == "" {
		var err error
		if filters, err = asciiJSON(orEmpty(g.Filters)); err != nil {
			return "", err
		}
	}
	out := `{"filters":` + filters
	if g.NamespacePrefix != nil {
		ns, err := asciiJSON(g.NamespacePrefix)
		if err != nil {
			return "", err
		}
		out += `,"namespace_prefix":` + ns
	}
	vals, err := valuesJSON(&g)
	if err != nil {
		return "", err
	}
	if vals != "" {
		out += `,"values":` + vals
	}
	return out + "}", nil
}

// sameMap reports whether a and b are the same map (or both nil).
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// renderDenial writes a denial's response: {"detail": ...} as JSON, a
// Bearer challenge on a 401 (RFC 6750 §3: no error code when the request
// had no credential), and the reason header when asked for.
func renderDenial(d *Decision, reasonHeader bool) {
	d.Headers, d.RemoveHeaders = nil, nil
	body, err := asciiJSON(map[string]string{"detail": d.Detail})
	if err != nil {
		body = `{"detail":"Forbidden"}`
	}
	if e := d.RPCError; e != nil {
		// A JSON-RPC message langgate refused: the JSON-RPC error object,
		// as the endpoint's server answers one.
		if b, err := asciiJSON(rpcErrorBody{JSONRPC: "2.0", ID: e.ID, Error: rpcErrorObject{Code: e.Code, Message: e.Message}}); err == nil {
			body = b
		}
	}
	d.Body = body
	d.ResponseHeaders = []Header{{Name: "content-type", Value: "application/json"}}
	if d.Outcome == Unauthenticated {
		challenge := `Bearer realm="langgate"`
		if d.challenge != "" {
			challenge = d.challenge
		}
		if d.AuthFailure != authn.KindMissing {
			challenge += `, error="invalid_token"`
		}
		d.ResponseHeaders = append(d.ResponseHeaders, Header{Name: "www-authenticate", Value: challenge})
	}
	if reasonHeader && d.Reason != "" {
		d.ResponseHeaders = append(d.ResponseHeaders, Header{Name: HeaderReason, Value: shortReason(d.Reason)})
	}
}

// rpcErrorBody is a JSON-RPC 2.0 error response.
type rpcErrorBody struct {
	JSONRPC string         `json:"jsonrpc"`
	ID      any            `json:"id"`
	Error   rpcErrorObject `json:"error"`
}

type rpcErrorObject struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// headersToRemove lists the x-langgate-* headers the client sent that
// langgate does not set itself, plus the route table's dangerous headers:
// they are removed, so nothing langgate did not write reaches the upstream
// under its prefix. Headers langgate sets are overwritten instead (Envoy
// applies removals after sets, so a header must never be in both lists).
func (p *Policy) headersToRemove(h map[string]string, set []Header) []string {
	var out []string
	for name := range h {
		if !strings.HasPrefix(name, HeaderPrefix) {
			if slices.Contains(p.strip, name) {
				out = append(out, name)
			}
			continue
		}
		owned := false
		for _, s := range set {
			if s.Name == name {
				owned = true
				break
			}
		}
		if !owned {
			out = append(out, name)
		}
	}
	return out
}

// maxReasonHeader bounds the x-langgate-reason value.
const maxReasonHeader = 256

// shortReason makes a reason fit a response header: printable ASCII, bounded.
func shortReason(r string) string {
	b := make([]byte, 0, min(len(r), maxReasonHeader))
	for i := 0; i < len(r) && len(b) < maxReasonHeader; i++ {
		if c := r[i]; c >= 0x20 && c <= 0x7e {
			b = append(b, c)
		} else {
			b = append(b, '?')
		}
	}
	return string(b)
}

// Header is one header name and value.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// asciiJSON encodes v as JSON with every non-ASCII character escaped as
// \uXXXX, so the result is a valid header value whatever the claims hold.
func asciiJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	ascii := true
	for _, c := range b {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b), nil
	}
	var sb strings.Builder
	sb.Grow(len(b) + 16)
	const hex = "0123456789abcdef"
	writeU := func(r rune) {
		sb.WriteString(`\u`)
		sb.WriteByte(hex[r>>12&0xf])
		sb.WriteByte(hex[r>>8&0xf])
		sb.WriteByte(hex[r>>4&0xf])
		sb.WriteByte(hex[r&0xf])
	}
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case r < utf8.RuneSelf:
			sb.WriteByte(b[0])
		case r > 0xffff:
			r -= 0x10000
			writeU(0xd800 + (r>>10)&0x3ff)
			writeU(0xdc00 + r&0x3ff)
		default:
			writeU(r)
		}
		b = b[size:]
	}
	return sb.String(), nil
}

// headerSafe reports whether s can be sent as a header value unchanged:
// printable ASCII only.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
