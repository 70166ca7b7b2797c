package decision

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
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
	// HeaderReason carries a short denial reason to the client when
	// explain.reason_header is on.
	HeaderReason = "x-langgate-reason"
)

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
