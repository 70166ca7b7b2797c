package authn

import "strings"

// MaxTokenBytes bounds a bearer token; larger ones are refused unparsed.
const MaxTokenBytes = 16 << 10

// BearerToken extracts the token from an Authorization header value
// ("Bearer <token>", scheme case-insensitive, RFC 6750 token syntax).
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", &Error{Kind: KindMissing, Reason: "no authorization header"}
	}
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", invalid("authorization scheme is not Bearer", nil)
	}
	token := strings.TrimLeft(rest, " ")
	switch {
	case token == "":
		return "", invalid("empty bearer token", nil)
	case len(token) > MaxTokenBytes:
		return "", invalid("token too large", nil)
	case !isB64Token(token):
		return "", invalid("token has characters outside RFC 6750 b64token", nil)
	}
	return token, nil
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
