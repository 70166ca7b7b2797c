package authn

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/langgate/langgate/pkg/config"
)

// MaxTokenBytes bounds a bearer token unless an issuer allows more; larger
// ones are refused unparsed.
const MaxTokenBytes = config.DefaultMaxTokenBytes

func checkSchemeValue(token string, maxBytes int) (string, error) {
	switch {
	case token == "":
		return "", invalid("empty bearer token", nil)
	case len(token) > maxBytes:
		return "", invalid("token too large", nil)
	case !isB64Token(token):
		return "", invalid("token has characters outside RFC 6750 b64token", nil)
	}
	return token, nil
}

// source is one compiled credential location.
type source struct {
	header, scheme, cookie, query string
	typ                           string
	desc                          string
}

func compileSources(cs []config.CredentialSource) ([]source, string) {
	if len(cs) == 0 {
		cs = config.DefaultCredentials()
	}
	out := make([]source, len(cs))
	descs := make([]string, len(cs))
	for i, c := range cs {
		typ := c.Type
		if typ == "" {
			typ = config.CredentialAny
		}
		out[i] = source{header: strings.ToLower(c.Header), scheme: c.Scheme, cookie: c.Cookie, query: c.Query, typ: typ, desc: c.Describe()}
		descs[i] = out[i].desc
	}
	// RFC 6750 §3.1 wording for the common case; the list otherwise.
	missing := "no " + strings.Join(descs, ", no ")
	if len(descs) > 1 {
		missing = "no credential: " + missing
	}
	return out, missing
}

// credential finds the request's credential: the first configured location
// present in the request. A header present with another scheme does not
// count as present (the next location is tried); if nothing else is found,
// that scheme mismatch is the error. A present but malformed credential is
// refused, never skipped.
func (a *Authenticator) credential(headers map[string]string, query url.Values) (string, string, error) {
	var mismatch error
	for i := range a.sources {
		s := &a.sources[i]
		var v string
		switch {
		case s.header != "":
			v = headers[s.header]
			if v == "" {
				continue
			}
			if s.scheme != "" {
				scheme, rest, ok := strings.Cut(v, " ")
				if !ok || !strings.EqualFold(scheme, s.scheme) {
					if mismatch == nil {
						mismatch = invalid(fmt.Sprintf("%s scheme is not %s", s.header, s.scheme), nil)
					}
					continue
				}
				tok, err := checkSchemeValue(strings.TrimLeft(rest, " "), a.maxBytes)
				return tok, s.typ, err
			}
		case s.cookie != "":
			var found bool
			var err error
			v, found, err = cookieValue(headers["cookie"], s.cookie)
			if err != nil {
				return "", "", err
			}
			if !found {
				continue
			}
		default:
			vals, ok := query[s.query]
			if !ok {
				continue
			}
			if len(vals) != 1 {
				return "", "", invalid(s.desc+" given more than once", nil)
			}
			v = vals[0]
		}
		switch {
		case v == "":
			return "", "", invalid("empty credential in "+s.desc, nil)
		case len(v) > a.maxBytes:
			return "", "", invalid("token too large", nil)
		case !isCredentialText(v):
			return "", "", invalid(s.desc+" has characters not allowed in a credential", nil)
		}
		return v, s.typ, nil
	}
	if mismatch != nil {
		return "", "", mismatch
	}
	return "", "", &Error{Kind: KindMissing, Reason: a.missing}
}

// cookieValue finds a cookie in a Cookie header. Envoy joins repeated
// Cookie headers with "; " (or "," when merging generic headers): both
// separate cookies, since neither may appear in a cookie value (RFC 6265
// §4.1.1). The same cookie twice with different values is ambiguous and
// refused.
func cookieValue(h, name string) (string, bool, error) {
	if h == "" {
		return "", false, nil
	}
	val, found := "", false
	for _, part := range strings.FieldsFunc(h, func(r rune) bool { return r == ';' || r == ',' }) {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || strings.TrimSpace(k) != name {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if found && v != val {
			return "", true, invalid(name+" cookie appears twice with different values", nil)
		}
		val, found = v, true
	}
	return val, found, nil
}

// isCredentialText accepts visible ASCII without quotes, backslashes, commas
// and semicolons: no credential needs them, and they are what header and
// cookie joining would otherwise smuggle in.
func isCredentialText(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ',' || c == ';' {
			return false
		}
	}
	return s != ""
}

// isB64Token checks RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." /
// "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' {
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
