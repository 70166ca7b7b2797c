package decision

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/langgate/langgate/pkg/config"
)

// The MCP endpoint as an OAuth 2.0 protected resource (authenticate.mcp),
// as the MCP specification's authorization asks of a server:
//
//   - its Protected Resource Metadata (RFC 9728) is served at
//     /.well-known/oauth-protected-resource followed by the resource's
//     path (and at the bare well-known path, which clients try next):
//     langgate answers these itself (outcome Served), no credential
//     needed, and the admin port serves the same documents;
//   - a 401 on the resource names it: WWW-Authenticate: Bearer
//     resource_metadata="<metadata URL>", so a client finds the
//     authorization server without configuration;
//   - a token is accepted on the resource only when it was issued for it:
//     its aud lists the resource's URL (RFC 8707), else 401 invalid_token.

// WellKnownResourceMetadata is RFC 9728's well-known path prefix.
const WellKnownResourceMetadata = "/.well-known/oauth-protected-resource"

// protectedResource is a compiled authenticate.mcp.
type protectedResource struct {
	// resource is the canonical URL; path its path, the requests it covers.
	resource, path string
	// metadataPaths are the paths the document is served at.
	metadataPaths []string
	// document is the metadata, JSON; challenge the 401's WWW-Authenticate.
	document  string
	challenge string
}

// resourceMetadata is RFC 9728's document (section 2), the members langgate
// fills in.
type resourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
}

// newProtectedResource compiles authenticate.mcp (already validated); nil
// when the policy has none.
func newProtectedResource(file string, a *config.Authenticate) (*protectedResource, error) {
	m := a.MCP
	if m == nil {
		return nil, nil
	}
	u, err := url.Parse(m.Resource)
	if err != nil {
		return nil, &config.Error{File: file, Pos: m.Pos, Msg: "authenticate.mcp.resource: " + err.Error()}
	}
	servers := m.AuthorizationServers
	if servers == nil {
		for _, iss := range a.OIDC {
			if slices.Contains(iss.Audiences, m.Resource) && !slices.Contains(servers, iss.Issuer) {
				servers = append(servers, iss.Issuer)
			}
		}
	}
	if len(servers) == 0 {
		return nil, &config.Error{File: file, Pos: m.Pos, Msg: "authenticate.mcp.authorization_servers: required when no authenticate.oidc issuer lists the resource in its audiences"}
	}
	doc, err := json.Marshal(resourceMetadata{
		Resource:               m.Resource,
		AuthorizationServers:   servers,
		ScopesSupported:        m.ScopesSupported,
		BearerMethodsSupported: bearerMethods(a),
		ResourceName:           m.ResourceName,
		ResourceDocumentation:  m.ResourceDocumentation,
	})
	if err != nil {
		return nil, fmt.Errorf("authenticate.mcp: %w", err)
	}
	metadataURL := u.Scheme + "://" + u.Host + WellKnownResourceMetadata + u.EscapedPath()
	return &protectedResource{
		resource:      m.Resource,
		path:          u.Path,
		metadataPaths: []string{WellKnownResourceMetadata + u.Path, WellKnownResourceMetadata},
		document:      string(doc),
		challenge:     `Bearer realm="langgate", resource_metadata=` + strconv.Quote(metadataURL),
	}, nil
}

// bearerMethods are RFC 6750's ways the policy accepts a token:
// "header" for the Authorization header, "query" when it reads one from
// the query. The other credential places are not bearer methods.
func bearerMethods(a *config.Authenticate) []string {
	out := []string{}
	for _, c := range a.Credentials {
		switch {
		case strings.EqualFold(c.Header, "authorization") && strings.EqualFold(c.Scheme, "bearer") && !slices.Contains(out, "header"):
			out = append(out, "header")
		case c.Query != "" && !slices.Contains(out, "query"):
			out = append(out, "query")
		}
	}
	return out
}

// covers reports whether a normalized path is the resource's.
func (r *protectedResource) covers(path string) bool {
	return r != nil && path == r.path
}

// serve answers a request for the metadata document, when it is one.
func (r *protectedResource) serve(d *Decision, method, path string) bool {
	if r == nil || (method != "GET" && method != "HEAD") || !slices.Contains(r.metadataPaths, path) {
		return false
	}
	d.Outcome, d.Status, d.Reason = Served, 200, "OAuth protected resource metadata (RFC 9728) of "+r.resource
	d.Body = r.document
	d.ResponseHeaders = []Header{
		{Name: "content-type", Value: "application/json"},
		{Name: "cache-control", Value: "public, max-age=300"},
		// Public metadata: a browser-based MCP client on any origin reads it.
		{Name: "access-control-allow-origin", Value: "*"},
	}
	return true
}

// audience checks that the user's token was issued for the resource: its
// aud claim (a string or a list of them) lists the resource's URL.
func (r *protectedResource) audience(claims map[string]any) bool {
	switch aud := claims["aud"].(type) {
	case string:
		return aud == r.resource
	case []any:
		for _, a := range aud {
			if a == r.resource {
				return true
			}
		}
	}
	return false
}

// ResourceMetadata is the protected resource metadata document served at
// path by one of the engine's policies (the admin port serves it too),
// and whether there is one.
func (e *Engine) ResourceMetadata(path string) (string, bool) {
	for _, p := range e.policies {
		if r := p.resource; r != nil && slices.Contains(r.metadataPaths, path) {
			return r.document, true
		}
	}
	return "", false
}
