package routes

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// JSON-RPC routes. The LangGraph Python server serves MCP (POST /mcp) and
// A2A (POST /a2a/{assistant_id}) as JSON-RPC 2.0 over HTTP: what a request
// does is the body's "method", and its handlers fire their events through
// in-process calls to the server's own API (assistants.search, runs.wait,
// threads.get, ...), with the outer caller's auth context. A route with an
// RPC dispatches on the method: each method is the list of the events its
// handler's inner calls fire, with the values langgate can know at the
// edge (the rest, such as the assistant a tool name resolves to, is the
// server's to choose, and the event's filters restrict it).
//
// Every such event is Optional: the server fires it only on its way (a
// tool the caller's search does not return is never run), and a handler
// denying it leaves it unauthorized, so the adapter refuses that inner
// call (403) exactly where LangGraph's own handler would have raised.
// What langgate knows of what an inner call acts on (the A2A assistant,
// a task's thread, a stateless run's absent thread) is bound as an
// identifier: the inner call's path is not the outer request's, so the
// adapters check the value, not the path.

// Dialect is how a JSON-RPC endpoint's server reads a message.
type Dialect int

// The JSON-RPC dialects of the LangGraph Python server.
const (
	// DialectMCP is the Model Context Protocol's Streamable HTTP transport
	// (langgraph_api/api/mcp): requests and notifications, no batches.
	DialectMCP Dialect = iota + 1
	// DialectA2A is the Agent2Agent protocol (langgraph_api/api/a2a.py):
	// requests only, no notifications, no batches.
	DialectA2A
)

func (d Dialect) String() string {
	switch d {
	case DialectMCP:
		return "MCP"
	case DialectA2A:
		return "A2A"
	}
	return "JSON-RPC"
}

// JSON-RPC 2.0 error codes (the specification's, section 5.1).
const (
	RPCParseError     = -32700
	RPCInvalidRequest = -32600
	RPCMethodNotFound = -32601
	RPCInvalidParams  = -32602
)

// RPCError is a JSON-RPC message langgate refuses: the error object the
// client gets (code, message) and the id of its request when it had a
// valid one (nil otherwise: "id": null).
type RPCError struct {
	Code    int
	Message string
	ID      any
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("JSON-RPC error %d: %s", e.Code, e.Message)
}

// RPC is a JSON-RPC route's dispatch on the body's method.
type RPC struct {
	Dialect Dialect
	// Methods are the methods the server handles, each with how its
	// events are built. Any other method is refused (-32601).
	Methods map[string]RPCMethod
	// UUIDParam names a path parameter the server requires to be a UUID
	// (A2A's assistant_id, else -32602 from the server): refused at the
	// edge in any other spelling than 8-4-4-4-12 hex digits.
	UUIDParam string
}

// RPCMethod is one method of a JSON-RPC route.
type RPCMethod struct {
	// Events lists, for the route table's description, the events the
	// method's handler can fire (all Optional).
	Events []EventSpec
	// Fire builds the events of one call from its params object (never
	// nil) and the path parameters; an error refuses the call (-32602).
	// Nil: the method fires no event (initialize, ping).
	Fire func(params map[string]any, path Params) ([]Event, error)
}

// MethodNames lists the methods of the dispatch, sorted.
func (r *RPC) MethodNames() []string {
	out := make([]string, 0, len(r.Methods))
	for m := range r.Methods {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Call is one JSON-RPC message langgate read: its method and id, and
// whether it is a notification (no id: nothing is answered, nothing runs).
type Call struct {
	Method       string
	ID           any
	Notification bool
}

// Fire reads the body as one JSON-RPC message of the dialect and returns
// the events of its method. A message the server would read otherwise
// than langgate, or refuse, is refused with the JSON-RPC error the client
// gets: a parse error, a batch, a wrong envelope, an unknown method,
// params that are not an object or that the method's events cannot be
// built from.
func (r *RPC) Fire(path Params, body *Body) (Call, []Event, *RPCError) {
	v, err := body.parse()
	switch {
	case errors.Is(err, ErrBodyNotSent) || errors.Is(err, ErrBodyTruncated) || errors.Is(err, ErrBodyTooLarge):
		return Call{}, nil, &RPCError{Code: RPCInvalidRequest, Message: "Invalid Request: " + err.Error()}
	case err != nil:
		return Call{}, nil, &RPCError{Code: RPCParseError, Message: "Parse error: " + err.Error()}
	}
	var msg map[string]any
	switch x := v.(type) {
	case map[string]any:
		msg = x
	case []any:
		return Call{}, nil, &RPCError{Code: RPCInvalidRequest, Message: "Invalid Request: batch requests are not supported by the " + r.Dialect.String() + " endpoint"}
	default:
		return Call{}, nil, &RPCError{Code: RPCInvalidRequest, Message: "Invalid Request: the body is not a JSON-RPC message (got " + jsonKind(v) + ")"}
	}
	if msg["jsonrpc"] != "2.0" {
		return Call{}, nil, &RPCError{Code: RPCInvalidRequest, Message: `Invalid Request: "jsonrpc" must be "2.0"`}
	}
	var call Call
	rawID, hasID := msg["id"]
	if hasID && rawID != nil {
		if !validID(rawID) {
			// The servers echo any id (MCP) or any number, booleans
			// included (A2A); JSON-RPC allows strings and integers.
			return Call{}, nil, &RPCError{Code: RPCInvalidRequest, Message: "Invalid Request: an id must be a string or an integer"}
		}
		call.ID = rawID
	}
	method, ok := msg["method"].(string)
	if !ok {
		if _, present := msg["method"]; !present {
			// A response (result or error): the server sends no requests
			// to answer, so a client has none to send.
			return call, nil, &RPCError{Code: RPCInvalidRequest, Message: `Invalid Request: a message without a "method" (a response) is not accepted`, ID: call.ID}
		}
		return call, nil, &RPCError{Code: RPCInvalidRequest, Message: `Invalid Request: "method" must be a string`, ID: call.ID}
	}
	call.Method = method
	if call.ID == nil {
		// MCP runs nothing for a notification (202); A2A has none and
		// answers -32600, but also -32601 first for an unknown method.
		if r.Dialect == DialectMCP && strings.HasPrefix(method, "notifications/") {
			call.Notification = true
			return call, nil, nil
		}
		if _, known := r.Methods[method]; !known && r.Dialect == DialectA2A {
			return call, nil, &RPCError{Code: RPCMethodNotFound, Message: "Method not found: " + method}
		}
		return call, nil, &RPCError{Code: RPCInvalidRequest, Message: "Invalid Request: a request needs an id (only notifications/... are notifications)"}
	}
	m, known := r.Methods[method]
	if !known {
		return call, nil, &RPCError{Code: RPCMethodNotFound, Message: "Method not found: " + method, ID: call.ID}
	}
	if r.UUIDParam != "" {
		if id, _ := path.Get(r.UUIDParam); !IsUUID(id) {
			return call, nil, &RPCError{Code: RPCInvalidParams, Message: "Invalid assistant ID: must be a UUID", ID: call.ID}
		}
	}
	params := map[string]any{}
	if p, present := msg["params"]; present {
		obj, ok := p.(map[string]any)
		if !ok {
			// The servers fail on a non-object params (500, or -32603).
			return call, nil, &RPCError{Code: RPCInvalidParams, Message: "Invalid params: params must be an object", ID: call.ID}
		}
		params = obj
	}
	if m.Fire == nil {
		return call, nil, nil
	}
	evs, err := m.Fire(params, path)
	if err != nil {
		return call, nil, &RPCError{Code: RPCInvalidParams, Message: "Invalid params: " + err.Error(), ID: call.ID}
	}
	return call, evs, nil
}

// validID reports whether a JSON-RPC id is one every reading agrees on: a
// string, or an integer exactly representable (below 2^53).
func validID(v any) bool {
	switch x := v.(type) {
	case string:
		return true
	case float64:
		return x == math.Trunc(x) && math.Abs(x) < 1<<53
	}
	return false
}

// IsUUID reports whether s is a UUID in its 8-4-4-4-12 hex form (either
// case), the one spelling that langgate, the adapters and Python's
// uuid.UUID read alike.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// rpcEvent is one Optional event of a JSON-RPC method, with its value.
func rpcEvent(spec EventSpec, value map[string]any) Event {
	return Event{Resource: spec.Resource, Action: spec.Action, Optional: true, Inner: true, Fields: spec.Fields, Value: value}
}

// optString is params[key] when it is a string; absent (or null) is "",
// false; another type is an error.
func optString(params map[string]any, key string) (string, bool, error) {
	v, ok := params[key]
	if !ok || v == nil {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, fmt.Errorf("%s must be a string (got %s)", key, jsonKind(v))
	}
	return s, true, nil
}

// cursorOffset reads MCP's tools/list cursor as the server does
// (int(cursor), the search's offset), for the one spelling every reading
// agrees on: absent, or up to nine ASCII digits. Python's int() also
// takes " 5", "+5", "1_0", other scripts' digits and numbers.
func cursorOffset(params map[string]any) (float64, error) {
	v, ok := params["cursor"]
	if !ok {
		return 0, nil
	}
	s, isString := v.(string)
	if !isString || s == "" || len(s) > 9 {
		return 0, errors.New("cursor must be a string of up to nine digits, as tools/list returns it")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("cursor must be a string of up to nine digits, as tools/list returns it")
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, err
	}
	return float64(n), nil
}
