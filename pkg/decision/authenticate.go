package decision

import (
	"strings"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/policy"
)

// LangGraph Studio marks its requests with x-auth-scheme: langsmith.
const (
	studioSchemeHeader = "x-auth-scheme"
	studioScheme       = "langsmith"
)

// authenticate is the authenticate phase: the policy's credential
// locations (Authorization by default, other headers, cookies, the query
// when enabled) and kinds (JWT, opaque token, API key) turned into a user,
// or a 401. With DecideOptions.Claims the user is built from the given
// claims instead (langgate check --claims).
func (p *pass) authenticate() bool {
	d := p.d
	var user *authn.User
	var err error
	if p.opts.Claims != nil {
		user, err = p.pol.Auth.FromClaims(p.opts.Claims)
	} else {
		user, err = p.pol.Auth.AuthenticateRequest(p.ctx, p.req.Headers, p.target.Query)
	}
	if err != nil {
		ae, ok := authn.AsError(err)
		if !ok {
			ae = &authn.Error{Kind: authn.KindInvalid, Reason: "verification failed", Err: err}
		}
		if ae.Kind == authn.KindOverloaded {
			// Not the credential's fault: a 503 that Envoy and clients
			// retry, with no Bearer challenge.
			d.deny(Error, 503, ae.Detail(), ae.Error())
			return true
		}
		d.deny(Unauthenticated, 401, ae.Detail(), ae.Error())
		d.AuthFailure, d.AuthReason = ae.Kind, ae.Reason
		return true
	}
	if !headerSafe(user.Identity) {
		d.deny(Unauthenticated, 401, "Invalid token", "identity contains characters that cannot be sent in a header")
		d.AuthFailure, d.AuthReason = authn.KindInvalid, "identity not header-safe"
		return true
	}
	if p.pol.resource.covers(p.target.Path) && !p.pol.resource.audience(user.ClaimsMap()) {
		// RFC 8707 and the MCP specification: a token issued for another
		// resource (another API of the same issuer) is not one for this.
		d.deny(Unauthenticated, 401, "Invalid token", "the token's aud does not list the MCP resource "+p.pol.resource.resource)
		d.AuthFailure, d.AuthReason = authn.KindInvalid, "audience is not the MCP resource"
		return true
	}
	d.User = user
	if p.pol.studio != nil && strings.EqualFold(strings.TrimSpace(p.req.Headers[studioSchemeHeader]), studioScheme) {
		// LangGraph Studio's request: a Studio user if the rule holds for
		// the user langgate just authenticated; else an ordinary request
		// (the header is removed either way).
		in := &policy.Input{User: user, Request: &policy.Request{Method: p.req.Method, Path: p.target.Path, Headers: p.req.Headers, Query: p.target.Query}, Context: p.req.Context}
		ok, err := p.pol.studio.Holds(in)
		if err != nil {
			d.deny(Denied, 403, "Forbidden", "authorize.studio failed: "+err.Error())
			return true
		}
		d.Studio = ok
	}
	if err := p.ctx.Err(); err != nil {
		d.deny(Error, 503, "Request cancelled", "context ended: "+err.Error())
		return true
	}
	return false
}
