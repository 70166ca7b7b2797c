package decision

import (
	"fmt"
	"strings"
)

// PolicyContextKey is the context extension that selects a policy.
const PolicyContextKey = "policy"

type hostSuffix struct {
	suffix string // ".example.com"
	policy *Policy
}

// choose is the select phase: it picks the policy for the request (the
// context extension `policy`, else the :authority host, else the
// default). A selector that names no policy denies, never falls back to
// something looser.
func (e *Engine) choose(p *pass) bool {
	pol, why, err := e.selectPolicy(p.req)
	if err != nil {
		p.d.deny(Denied, 403, "Forbidden", err.Error())
		return true
	}
	p.pol, p.d.Policy = pol, pol.Name
	p.tr.policy(pol.Name, why)
	return false
}

func (e *Engine) selectPolicy(req *Request) (*Policy, string, error) {
	if name, ok := req.Context[PolicyContextKey]; ok {
		if p := e.byName[name]; p != nil {
			if p.ShadowOf != "" {
				return nil, "", fmt.Errorf("context extension policy=%q names a shadow policy (of %q), which is never enforced", name, p.ShadowOf)
			}
			return p, "context extension policy=" + name, nil
		}
		return nil, "", fmt.Errorf("context extension policy=%q names no policy", name)
	}
	host := req.Headers[":authority"]
	if host == "" {
		host = req.Headers["host"]
	}
	// A trailing dot names the same host (a fully qualified name): it must
	// not fall through to a looser default.
	host = strings.TrimSuffix(strings.ToLower(stripPort(host)), ".")
	if p := e.hosts[host]; p != nil {
		return p, "host " + host, nil
	}
	for _, s := range e.suffixes {
		if strings.HasSuffix(host, s.suffix) && len(host) > len(s.suffix) {
			return s.policy, "host " + host + " matches *" + s.suffix, nil
		}
	}
	if e.defaultPolicy != nil {
		return e.defaultPolicy, "default policy", nil
	}
	return nil, "", fmt.Errorf("no policy for host %q and no default_policy", host)
}

func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		return host[:i]
	}
	return strings.Trim(host, "[]")
}
