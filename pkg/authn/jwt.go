package authn

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/langgate/langgate/pkg/config"
)

// maxKidBytes bounds a kid: it is untrusted text, used as a map key.
const maxKidBytes = 256

// unverified is a compact JWS decoded without verification: only to pick
// the one verifier allowed to check it and to refuse it cheaply.
type unverified struct {
	alg, kid, typ string
	// crit and b64 record that the header carries these parameters:
	// langgate implements no JWS extension, so either refuses the token.
	crit, b64 bool
	payload   []byte
	claims    map[string]any
	iss       string
}

// jwtShaped reports whether a credential has the shape of a compact JWS
// (three dot-separated parts): such a credential is never sent to token
// introspection unless configured, and is refused as malformed rather than
// tried as anything else.
func jwtShaped(s string) bool { return strings.Count(s, ".") == 2 }

// parseUnverified decodes a compact JWS's header and payload.
func parseUnverified(token string) (*unverified, error) {
	h64, rest, _ := strings.Cut(token, ".")
	p64, sig64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig64, ".") {
		return nil, fmt.Errorf("compact JWS has %d parts, want 3", strings.Count(token, ".")+1)
	}
	hj, err := base64.RawURLEncoding.DecodeString(h64)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	// A map keeps the parameter names exact: encoding/json would match
	// struct fields case-insensitively, and go-jose reads the names exactly.
	var header map[string]json.RawMessage
	if err := json.Unmarshal(hj, &header); err != nil || header == nil {
		return nil, fmt.Errorf("header is not a JSON object: %w", err)
	}
	u := &unverified{}
	str := func(name string) (string, error) {
		raw, ok := header[name]
		if !ok {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("header %s is not a string", name)
		}
		return s, nil
	}
	if u.alg, err = str("alg"); err != nil {
		return nil, err
	}
	if u.kid, err = str("kid"); err != nil {
		return nil, err
	}
	if u.typ, err = str("typ"); err != nil {
		return nil, err
	}
	if len(u.kid) > maxKidBytes {
		return nil, fmt.Errorf("kid longer than %d bytes", maxKidBytes)
	}
	_, u.crit = header["crit"]
	_, u.b64 = header["b64"]
	if u.payload, err = base64.RawURLEncoding.DecodeString(p64); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if err := json.Unmarshal(u.payload, &u.claims); err != nil || u.claims == nil {
		return nil, fmt.Errorf("claims are not a JSON object: %w", err)
	}
	u.iss, _ = u.claims["iss"].(string)
	return u, nil
}

// normalizeTyp compares media types as RFC 7515 §4.1.9 says: without case
// and with the "application/" prefix optional.
func normalizeTyp(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.TrimPrefix(s, "application/")
}

// checkHeader applies the JOSE header rules before any key is touched.
func (tr *trusted) checkHeader(u *unverified) *Error {
	switch {
	case !slices.Contains(tr.cfg.Algorithms, u.alg):
		return invalid("algorithm not allowed", fmt.Errorf("alg %q is not in the issuer's allowlist", u.alg))
	case u.crit:
		return invalid("unsupported critical header", nil)
	case u.b64:
		return invalid("unsupported critical header", fmt.Errorf("b64 (RFC 7797) is not accepted"))
	case tr.typ != "" && normalizeTyp(u.typ) != tr.typ:
		return invalid("wrong token type", fmt.Errorf("typ %q, want %q", u.typ, tr.cfg.Typ))
	}
	return nil
}

// checkClaims applies the time, audience, azp and required-claim rules
// go-oidc leaves to us and returns the token's expiry.
func (tr *trusted) checkClaims(now time.Time, claims map[string]any) (time.Time, *Error) {
	exp, err := checkTimes(now, tr.cfg.Leeway.Duration, claims, true)
	if err != nil {
		return time.Time{}, err
	}
	if !audienceMatches(claims["aud"], tr.cfg.Audiences) {
		return time.Time{}, invalid("wrong audience", nil)
	}
	if len(tr.cfg.AZP) > 0 {
		azp, _ := claims["azp"].(string)
		if !slices.Contains(tr.cfg.AZP, azp) {
			return time.Time{}, invalid("wrong authorized party", nil)
		}
	}
	if err := requireClaims(claims, tr.cfg.RequiredClaims); err != nil {
		return time.Time{}, err
	}
	return exp, nil
}

// checkTimes checks exp (required when needExp), nbf and iat with leeway,
// and returns exp (zero when absent).
func checkTimes(now time.Time, leeway time.Duration, claims map[string]any, needExp bool) (time.Time, *Error) {
	var exp time.Time
	if raw, present := claims["exp"]; present {
		var ok bool
		if exp, ok = numericDate(raw); !ok {
			return time.Time{}, invalid("malformed exp", nil)
		}
		if now.After(exp.Add(leeway)) {
			return time.Time{}, invalid("expired", nil)
		}
	} else if needExp {
		return time.Time{}, invalid("missing exp", nil)
	}
	if raw, present := claims["nbf"]; present {
		nbf, ok := numericDate(raw)
		if !ok {
			return time.Time{}, invalid("malformed nbf", nil)
		}
		if now.Add(leeway).Before(nbf) {
			return time.Time{}, invalid("not yet valid", nil)
		}
	}
	if raw, present := claims["iat"]; present {
		iat, ok := numericDate(raw)
		if !ok {
			return time.Time{}, invalid("malformed iat", nil)
		}
		if now.Add(leeway).Before(iat) {
			return time.Time{}, invalid("issued in the future", nil)
		}
	}
	return exp, nil
}

func requireClaims(claims map[string]any, names []string) *Error {
	for _, name := range names {
		if v, ok := claims[name]; !ok || v == nil {
			return invalid("missing required claim", fmt.Errorf("claim %q is required", name))
		}
	}
	return nil
}

func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

func audienceMatches(aud any, want []string) bool {
	switch v := aud.(type) {
	case string:
		return slices.Contains(want, v)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok && slices.Contains(want, s) {
				return true
			}
		}
	}
	return false
}

// verifyReason classifies a signature verification error by its type:
// the key set's sentinels, wrapped with %w all the way.
func verifyReason(err error) (string, Kind) {
	switch {
	case errors.Is(err, errNoKeys):
		return "issuer has no keys yet", KindUnavailable
	case errors.Is(err, errBadSignature):
		return "bad signature", KindInvalid
	case errors.Is(err, errUnknownKey):
		return "unknown signing key", KindInvalid
	case errors.Is(err, errAlgMismatch):
		return "algorithm does not match the key", KindInvalid
	case errors.Is(err, errAlgNotAllowed):
		return "algorithm not allowed", KindInvalid
	case errors.Is(err, errMalformedJWS):
		return "malformed token", KindInvalid
	default:
		return "verification failed", KindInvalid
	}
}

// maxTokenBytes is an issuer's token size bound.
func maxTokenBytes(c config.OIDCIssuer) int {
	if c.MaxTokenBytes != nil {
		return int(c.MaxTokenBytes.Bytes)
	}
	return config.DefaultMaxTokenBytes
}
