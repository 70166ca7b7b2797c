// Package authn owns authentication: extracting the credential from a
// request, verifying OIDC tokens against issuers discovered and refreshed in
// the background, caching verified tokens, and building the user that
// handlers see from the verified claims.
package authn

import (
	"errors"
	"fmt"
)

// Kind classifies an authentication failure; every kind but
// KindOverloaded is an HTTP 401.
type Kind int

// Failure kinds. Their names double as bounded log and metric labels.
const (
	// KindMissing: the request carries no credential.
	KindMissing Kind = iota + 1
	// KindInvalid: the credential is malformed, forged, expired or not for us.
	KindInvalid
	// KindUnavailable: the credential's issuer has no usable keys yet.
	KindUnavailable
	// KindOverloaded: the credential was not looked at, for memory
	// pressure (Options.Overload); a 503, not a judgement of the
	// credential.
	KindOverloaded
)

// errShed is the cause of a KindOverloaded error.
var errShed = errors.New("unverified credential shed under memory pressure")

// String returns a short, stable label.
func (k Kind) String() string {
	switch k {
	case KindMissing:
		return "missing"
	case KindInvalid:
		return "invalid"
	case KindUnavailable:
		return "unavailable"
	case KindOverloaded:
		return "overloaded"
	default:
		return "unknown"
	}
}

// Error is an authentication failure. Its message is safe to log: it never
// contains the credential.
type Error struct {
	Kind Kind
	// Reason is a short, stable description ("expired", "bad signature").
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("authentication %s: %s: %v", e.Kind, e.Reason, e.Err)
	}
	return fmt.Sprintf("authentication %s: %s", e.Kind, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Detail is the client-facing text: LangGraph's "Invalid token" for bad
// credentials, nothing that helps an attacker tune a forgery.
func (e *Error) Detail() string {
	switch e.Kind {
	case KindMissing:
		return "Missing authentication token"
	case KindUnavailable:
		return "Unable to verify token"
	case KindOverloaded:
		return "Service overloaded"
	default:
		return "Invalid token"
	}
}

func invalid(reason string, err error) *Error {
	return &Error{Kind: KindInvalid, Reason: reason, Err: err}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
