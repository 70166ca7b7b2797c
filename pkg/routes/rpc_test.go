package routes

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestRPCGolden: every message below, sent to the LangGraph table's MCP or
// A2A endpoint, with the events langgate reads from it (resource:action,
// ? for optional, the value) or the JSON-RPC error it refuses it with
// (testdata/rpc.golden). The event lists follow the server's handlers
// (agents.go); the differential test checks them against the real server.
func TestRPCGolden(t *testing.T) {
	table, err := NewTable(LangGraph())
	if err != nil {
		t.Fatal(err)
	}
	const aid = "6ba7b821-9dad-11d1-80b4-00c04fd430c8"
	const tid = "1ef6c4a2-0000-4000-8000-000000000001"
	cases := []struct{ path, body string }{
		// MCP: the methods.
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":"a","method":"ping"}`},
		{"/mcp", `{"jsonrpc":"2.0","method":"notifications/initialized"}`},
		{"/mcp", `{"jsonrpc":"2.0","id":null,"method":"notifications/cancelled","params":{"requestId":1}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`},
		{"/mcp", `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"100"}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"agent","arguments":{"messages":[{"role":"human","content":"hi"}]}}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"agent","context":{"k":1}}}`},
		// MCP: what is refused.
		{"/mcp", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"resources/list"}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"Tools/List"}`},
		{"/mcp", `{"jsonrpc":"1.0","id":1,"method":"ping"}`},
		{"/mcp", `{"id":1,"method":"ping"}`},
		{"/mcp", `{"jsonrpc":"2.0","id":true,"method":"ping"}`},
		{"/mcp", `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`},
		{"/mcp", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"agent"}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"result":{}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":""}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":5}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":null}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[]}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":" 5"}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":5}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"1_0"}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"ping"`},
		{"/mcp", `{"jsonrpc":"2.0","id":1,"method":"ping","x":NaN}`},
		{"/mcp", ``},
		// A2A.
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"role":"user","messageId":"m","parts":[{"kind":"text","text":"hi"}]}}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"role":"ROLE_USER","messageId":"m","contextId":"` + tid + `","parts":[{"text":"hi"}]}}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":1,"method":"message/stream","params":{"message":{"messageId":"m","taskId":"` + tid + `:r1","parts":[]}}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"messageId":"m","taskId":"r1","parts":[]}}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"contextId":7}}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"contextId":"../../assistants/` + aid + `"}}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"taskId":"x/../y:r1"}}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":"t","method":"ListTasks","params":{"contextId":"t1"}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":"t","method":"tasks/get","params":{"id":"` + tid + `:r1"}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":"t","method":"GetTask","params":{"id":"r1","contextId":"` + tid + `"}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":"t","method":"tasks/get","params":{"id":"r1"}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":"t","method":"tasks/cancel","params":{"id":"` + tid + `:r1"}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":"t","method":"ListTasks","params":{"contextId":"` + tid + `"}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":"t","method":"ListTasks"}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":"t","method":"GetExtendedAgentCard"}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","method":"message/send","params":{"message":{}}}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","method":"tasks/resubscribe"}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":1,"method":"tasks/list"}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":1,"method":"tasks/pushNotificationConfig/set"}`},
		{"/a2a/" + aid, `{"jsonrpc":"2.0","id":true,"method":"tasks/get","params":{"id":"a:b"}}`},
		{"/a2a/" + aid, `[]`},
		{"/a2a/" + strings.ToUpper(aid), `{"jsonrpc":"2.0","id":1,"method":"GetExtendedAgentCard"}`},
		{"/a2a/" + strings.ReplaceAll(aid, "-", ""), `{"jsonrpc":"2.0","id":1,"method":"GetExtendedAgentCard"}`},
		{"/a2a/urn:uuid:" + aid, `{"jsonrpc":"2.0","id":1,"method":"GetExtendedAgentCard"}`},
		{"/a2a/agent", `{"jsonrpc":"2.0","id":1,"method":"GetExtendedAgentCard"}`},
	}
	var b strings.Builder
	for _, c := range cases {
		target, err := Normalize(c.path)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		r, params := table.Match("POST", target.Segments)
		if r == nil || r.RPC == nil {
			t.Fatalf("POST %s: not a JSON-RPC route", c.path)
		}
		fmt.Fprintf(&b, "POST %s %s\n", c.path, c.body)
		call, evs, rerr := r.RPC.Fire(params, &Body{Data: []byte(c.body), ContentType: "application/json"})
		if rerr != nil {
			id, _ := json.Marshal(rerr.ID)
			fmt.Fprintf(&b, "  error %d id %s: %s\n", rerr.Code, id, rerr.Message)
			continue
		}
		switch {
		case call.Notification:
			b.WriteString("  notification: no event\n")
		case len(evs) == 0:
			b.WriteString("  no event\n")
		}
		for _, ev := range evs {
			if !ev.Optional {
				t.Errorf("%s %s: %s:%s is not optional", c.path, c.body, ev.Resource, ev.Action)
			}
			v, _ := json.Marshal(ev.Value)
			fmt.Fprintf(&b, "  %s:%s? %s\n", ev.Resource, ev.Action, v)
		}
	}
	golden(t, "rpc.golden", b.String())
}

// TestRPCBodyStates: a body langgate did not receive whole is refused as
// an invalid request, never read as a method.
func TestRPCBodyStates(t *testing.T) {
	rpc := MCPDispatch()
	for _, state := range []BodyState{BodyNotSent, BodyTruncated} {
		_, _, err := rpc.Fire(nil, &Body{Data: []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), State: state, ContentType: "application/json"})
		if err == nil || err.Code != RPCInvalidRequest {
			t.Errorf("state %d: %v, want -32600", state, err)
		}
	}
	_, _, err := rpc.Fire(nil, &Body{Data: []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), ContentType: "text/plain"})
	if err == nil || err.Code != RPCParseError {
		t.Errorf("text/plain: %v, want -32700", err)
	}
}

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"6ba7b821-9dad-11d1-80b4-00c04fd430c8":   true,
		"6BA7B821-9DAD-11D1-80B4-00C04FD430C8":   true,
		"6ba7b8219dad11d180b400c04fd430c8":       false,
		"{6ba7b821-9dad-11d1-80b4-00c04fd430c8}": false,
		"6ba7b821-9dad-11d1-80b4-00c04fd430cg":   false,
		"6ba7b821-9dad-11d1-80b4_00c04fd430c8":   false,
		"":                                       false,
	} {
		if IsUUID(s) != want {
			t.Errorf("IsUUID(%q) = %v, want %v", s, !want, want)
		}
	}
}

// FuzzRPC: any body sent to the MCP or A2A endpoint is either refused with
// a JSON-RPC error or read as one message whose envelope encoding/json
// reads the same way: an object with "jsonrpc": "2.0", the method named,
// a string or integer id (none only for an MCP notification), and events
// only for a known method, every one optional and inner.
func FuzzRPC(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"100"}}`,
		`{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"a","arguments":{}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"contextId":"c","taskId":"t:r"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"a:b"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, `{"jsonrpc":"2.0","id":1,"method":"ping","method":"x"}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	mcp, a2a := MCPDispatch(), A2ADispatch()
	path := Params{{Name: "assistant_id", Value: "6ba7b821-9dad-11d1-80b4-00c04fd430c8"}}
	f.Fuzz(func(t *testing.T, data []byte, isA2A bool) {
		d := mcp
		if isA2A {
			d = a2a
		}
		call, evs, rerr := d.Fire(path, &Body{Data: data, ContentType: "application/json"})
		if rerr != nil {
			if rerr.Code > -32600 || rerr.Code < -32700 || len(evs) != 0 {
				t.Fatalf("%q: error %v with %d events", data, rerr, len(evs))
			}
			return
		}
		var msg map[string]any
		if err := json.Unmarshal(data, &msg); err != nil {
			t.Fatalf("%q: read as a message, encoding/json refuses it: %v", data, err)
		}
		if msg["jsonrpc"] != "2.0" || msg["method"] != call.Method {
			t.Fatalf("%q: read method %q, encoding/json reads %v", data, call.Method, msg["method"])
		}
		switch id := msg["id"].(type) {
		case nil:
			if !call.Notification || isA2A {
				t.Fatalf("%q: no id, not an MCP notification", data)
			}
		case string, float64:
			if call.ID != id {
				t.Fatalf("%q: id %v, encoding/json reads %v", data, call.ID, id)
			}
		default:
			t.Fatalf("%q: accepted id %v", data, id)
		}
		if _, known := d.Methods[call.Method]; !known && !call.Notification {
			t.Fatalf("%q: accepted unknown method %q", data, call.Method)
		}
		for _, ev := range evs {
			if !ev.Optional || !ev.Inner {
				t.Fatalf("%q: %s:%s not optional and inner", data, ev.Resource, ev.Action)
			}
		}
	})
}
