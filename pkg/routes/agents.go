package routes

import (
	"errors"
	"strings"
)

// The events the LangGraph Python server's MCP and A2A handlers fire, as
// read in langgraph_api 0.16.7 (api/mcp/_handlers.py, api/a2a.py) and the
// in-memory runtime's ops, and checked against the real server by the
// differential test (test/conformance/agents.py). docs/langgraph.md,
// "MCP and A2A", has the table.

// The value fields of the inner events. An identifier langgate knows is
// bound (Field.ID); the others are the server's to choose.
var (
	fieldAssistantID = Field{Name: "assistant_id", From: FromBody, ID: true}
	fieldThreadID    = Field{Name: "thread_id", From: FromBody, ID: true}

	specAssistantsSearch = EventSpec{Resource: "assistants", Action: "search", Optional: true,
		Fields: []Field{{Name: "limit", From: FromBody}, {Name: "offset", From: FromBody}}}
	specAssistantsRead = EventSpec{Resource: "assistants", Action: "read", Optional: true, Fields: []Field{fieldAssistantID}}
	specCreateRun      = EventSpec{Resource: "threads", Action: "create_run", Optional: true,
		Fields: []Field{fieldThreadID, fieldAssistantID, {Name: "kwargs", From: FromBody}}}
	specThreadsRead   = EventSpec{Resource: "threads", Action: "read", Optional: true, Fields: []Field{fieldThreadID}}
	specThreadsSearch = EventSpec{Resource: "threads", Action: "search", Optional: true, Fields: []Field{fieldThreadID}}
	specThreadsUpdate = EventSpec{Resource: "threads", Action: "update", Optional: true, Fields: []Field{fieldThreadID}}
	specThreadsDelete = EventSpec{Resource: "threads", Action: "delete", Optional: true, Fields: []Field{fieldThreadID}}
)

// MCPDispatch is the LangGraph server's MCP endpoint (POST /mcp): every
// assistant is a tool named after it.
//
//   - initialize, ping, notifications/...: no inner call, no event.
//   - tools/list: assistants.search(limit 100, offset = the cursor), then
//     one assistants.get_schemas per tool: assistants:search, assistants:read.
//   - tools/call: assistants.search(limit 1000) to find the assistant of
//     the tool's name, then a stateless runs.wait on it: assistants:search,
//     threads:create_run (no thread), assistants:read (an assistant a user
//     created), threads:read (the wait joins the run on its temporary
//     thread). Which assistant the name resolves to is the server's
//     search, narrowed by the caller's assistants:search filters.
func MCPDispatch() *RPC {
	return &RPC{Dialect: DialectMCP, Methods: map[string]RPCMethod{
		"initialize": {},
		"ping":       {},
		"tools/list": {
			Events: []EventSpec{specAssistantsSearch, specAssistantsRead},
			Fire: func(params map[string]any, _ Params) ([]Event, error) {
				offset, err := cursorOffset(params)
				if err != nil {
					return nil, err
				}
				return []Event{
					rpcEvent(specAssistantsSearch, map[string]any{"limit": float64(100), "offset": offset}),
					rpcEvent(specAssistantsRead, map[string]any{}),
				}, nil
			},
		},
		"tools/call": {
			Events: []EventSpec{specAssistantsSearch, specCreateRun, specAssistantsRead, specThreadsRead},
			Fire: func(params map[string]any, _ Params) ([]Event, error) {
				name, ok, err := optString(params, "name")
				if err != nil {
					return nil, err
				}
				if !ok || name == "" {
					return nil, errors.New("a tool name is required")
				}
				kwargs := map[string]any{"input": map[string]any{}}
				if args, present := params["arguments"]; present && args != nil {
					obj, isObj := args.(map[string]any)
					if !isObj {
						return nil, errors.New("arguments must be an object")
					}
					kwargs["input"] = obj
				}
				if ctx, present := params["context"]; present && ctx != nil {
					kwargs["context"] = ctx
				}
				return []Event{
					rpcEvent(specAssistantsSearch, map[string]any{"limit": float64(1000), "offset": float64(0)}),
					// A stateless run: bound to no thread at all.
					rpcEvent(specCreateRun, map[string]any{"thread_id": nil, "kwargs": kwargs}),
					rpcEvent(specAssistantsRead, map[string]any{}),
					// runs.wait joins the run on its temporary thread.
					rpcEvent(specThreadsRead, map[string]any{}),
				}, nil
			},
		},
	}}
}

// A2ADispatch is the LangGraph server's A2A endpoint (POST
// /a2a/{assistant_id}): the assistant as an agent, a task as a run on a
// thread (the task id is "thread_id:run_id", the context id the thread).
//
//   - message/send, message/stream (SendMessage, SendStreamingMessage):
//     assistants:read of the path's assistant, then a run on the message's
//     context (a new thread when it names none): threads:create_run, and
//     threads:read / threads:search of the thread as the server follows
//     the run.
//   - tasks/get (GetTask): threads:read and threads:search of the task's thread.
//   - tasks/cancel (CancelTask): those, and threads:update (the cancel),
//     or for a task waiting on input a marker run: threads:create_run,
//     assistants:read, threads:update, threads:delete.
//   - ListTasks: threads:read and threads:search of the given context, or
//     of every thread the caller's threads:search returns.
//   - GetExtendedAgentCard: assistants:read.
func A2ADispatch() *RPC {
	send := RPCMethod{
		Events: []EventSpec{specAssistantsRead, specCreateRun, specThreadsRead, specThreadsSearch},
		Fire: func(params map[string]any, path Params) ([]Event, error) {
			msg, ok := params["message"].(map[string]any)
			if !ok {
				return nil, errors.New("params.message must be an object")
			}
			thread, err := taskThread(msg, "taskId")
			if err != nil {
				return nil, err
			}
			if _, hasTask, _ := optString(msg, "taskId"); hasTask && thread == nil {
				// The server finds no task then; langgate cannot bind its run.
				return nil, errors.New("message.taskId names no thread (thread_id:run_id) and message.contextId is not given")
			}
			aid := pathUUID(path)
			run := map[string]any{"assistant_id": aid}
			if thread != nil {
				run["thread_id"] = thread
			}
			return []Event{
				rpcEvent(specAssistantsRead, map[string]any{"assistant_id": aid}),
				rpcEvent(specCreateRun, run),
				rpcEvent(specThreadsRead, threadValue(thread)),
				rpcEvent(specThreadsSearch, threadValue(thread)),
			}, nil
		},
	}
	get := RPCMethod{
		Events: []EventSpec{specThreadsRead, specThreadsSearch},
		Fire: func(params map[string]any, _ Params) ([]Event, error) {
			thread, err := taskThread(params, "id")
			if err != nil || thread == nil {
				// No thread to look in: the server makes no call.
				return nil, err
			}
			return []Event{rpcEvent(specThreadsRead, threadValue(thread)), rpcEvent(specThreadsSearch, threadValue(thread))}, nil
		},
	}
	cancel := RPCMethod{
		Events: []EventSpec{specThreadsRead, specThreadsSearch, specThreadsUpdate, specCreateRun, specAssistantsRead, specThreadsDelete},
		Fire: func(params map[string]any, path Params) ([]Event, error) {
			thread, err := taskThread(params, "id")
			if err != nil || thread == nil {
				return nil, err
			}
			aid := pathUUID(path)
			t := threadValue(thread)
			return []Event{
				rpcEvent(specThreadsRead, t), rpcEvent(specThreadsSearch, t), rpcEvent(specThreadsUpdate, t),
				rpcEvent(specCreateRun, map[string]any{"thread_id": thread, "assistant_id": aid}),
				rpcEvent(specAssistantsRead, map[string]any{"assistant_id": aid}),
				rpcEvent(specThreadsDelete, t),
			}, nil
		},
	}
	list := RPCMethod{
		Events: []EventSpec{specThreadsRead, specThreadsSearch},
		Fire: func(params map[string]any, _ Params) ([]Event, error) {
			ctx, ok, err := optString(params, "contextId")
			if err != nil {
				return nil, err
			}
			var thread any
			if ok {
				if thread, err = threadID(ctx); err != nil {
					return nil, err
				}
			}
			return []Event{rpcEvent(specThreadsRead, threadValue(thread)), rpcEvent(specThreadsSearch, threadValue(thread))}, nil
		},
	}
	card := RPCMethod{
		Events: []EventSpec{specAssistantsRead},
		Fire: func(_ map[string]any, path Params) ([]Event, error) {
			aid := pathUUID(path)
			return []Event{rpcEvent(specAssistantsRead, map[string]any{"assistant_id": aid})}, nil
		},
	}
	return &RPC{Dialect: DialectA2A, UUIDParam: "assistant_id", Methods: map[string]RPCMethod{
		"SendMessage": send, "message/send": send,
		"SendStreamingMessage": send, "message/stream": send,
		"GetTask": get, "tasks/get": get,
		"CancelTask": cancel, "tasks/cancel": cancel,
		"ListTasks":            list,
		"GetExtendedAgentCard": card,
	}}
}

// taskThread is the thread of an A2A task as the server resolves it: the
// contextId when given, else the part of the task id before its first
// ":" (task ids are "thread_id:run_id"); nil when neither names one.
func taskThread(obj map[string]any, idKey string) (any, error) {
	ctx, hasCtx, err := optString(obj, "contextId")
	if err != nil {
		return nil, err
	}
	task, hasTask, err := optString(obj, idKey)
	if err != nil {
		return nil, err
	}
	switch {
	case hasCtx:
		return threadID(ctx)
	case hasTask:
		if t, _, found := strings.Cut(task, ":"); found {
			return threadID(t)
		}
	}
	return nil, nil
}

// errThreadNotUUID refuses a context that is not a thread id. The server
// puts it into the path of its in-process calls (/threads/{id}/runs)
// unescaped, and every thread id is a UUID there (anything else is a 422),
// so only a UUID names one thread for every reading.
var errThreadNotUUID = errors.New(`contextId (or a task id's part before ":") must be a thread's UUID`)

// threadID is a context as the thread it names, or errThreadNotUUID.
func threadID(s string) (any, error) {
	if !IsUUID(s) {
		return nil, errThreadNotUUID
	}
	return s, nil
}

// threadValue is the value of a thread event: bound to the thread when
// langgate knows it, else the server's to choose (filters restrict it).
func threadValue(thread any) map[string]any {
	if thread == nil {
		return map[string]any{}
	}
	return map[string]any{"thread_id": thread}
}

// pathUUID is the A2A path's assistant id as the server reads it
// (uuid.UUID: lower case); RPC.Fire checked it is a UUID.
func pathUUID(path Params) string {
	aid, _ := path.Get("assistant_id")
	return strings.ToLower(aid)
}
