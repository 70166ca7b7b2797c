package routes

// LangGraphStripHeaders are client headers removed from every request in
// front of a LangGraph server: `x-auth-scheme: langsmith` makes the LangGraph
// server skip its authenticate handler and run the request as the built-in
// Studio user (unless disable_studio_auth is set), which would sidestep the
// upstream adapter that enforces langgate's decision.
var LangGraphStripHeaders = []string{"x-auth-scheme"}

// LangGraph returns the built-in route table of the LangGraph server API:
// each route with the events LangGraph's custom auth fires for it and the
// fields of `value` its handlers see (see docs/langgraph-routes.md for the
// table and where it was checked against the real JS server).
func LangGraph() []Route {
	var rs []Route
	add := func(method, pattern string, events ...EventSpec) {
		rs = append(rs, Route{Method: method, Pattern: pattern, Events: events})
	}
	public := func(method, pattern string) {
		rs = append(rs, Route{Method: method, Pattern: pattern, Public: true})
	}
	// signedIn routes need a credential and fire no event: the server runs
	// nothing a handler could filter (the adapter refuses any event).
	signedIn := func(method, pattern string) {
		rs = append(rs, Route{Method: method, Pattern: pattern})
	}
	blocked := func(method, pattern string) {
		rs = append(rs, Route{Method: method, Pattern: pattern, Blocked: true})
	}
	ev := func(resource, action string, fields ...Field) EventSpec {
		return EventSpec{Resource: resource, Action: action, Fields: fields}
	}
	path := func(name string) Field { return Field{Name: name, From: FromPath} }
	body := func(names ...string) []Field {
		fs := make([]Field, len(names))
		for i, n := range names {
			fs[i] = Field{Name: n, From: FromBody}
		}
		return fs
	}
	with := func(first []Field, rest ...Field) []Field { return append(append([]Field(nil), rest...), first...) }
	// may marks an event the server fires only in some cases (Event.Optional).
	may := func(e EventSpec) EventSpec { e.Optional = true; return e }

	// Public routes: no credential, no event. GET / is the Python server's
	// root health check; /ui/... are the graphs' UI bundles, which the
	// <script> and <link> tags of a generative UI load without a token.
	for _, p := range []string{"/", "/ok", "/info", "/docs", "/openapi.json", "/metrics", "/ui/{path...}"} {
		public("GET", p)
	}
	// The HTML that loads a graph's UI bundle.
	signedIn("POST", "/ui/{graph_id}")

	// Threads.
	// A thread, assistant or store item the request names in its body is
	// what the event acts on: bound (Field.ID), when the request gives it.
	id := func(f Field) Field { f.ID = true; return f }
	threadCreate := with(body("metadata", "if_exists", "ttl"), id(Field{Name: "thread_id", From: FromBody}))
	threadSearch := body("metadata", "values", "status", "limit", "offset", "ids")
	tid := path("thread_id")
	// With supersteps, creating a thread also writes and reads its state.
	add("POST", "/threads", ev("threads", "create", threadCreate...), may(ev("threads", "update")), may(ev("threads", "read")))
	add("POST", "/threads/search", ev("threads", "search", threadSearch...))
	add("POST", "/threads/count", ev("threads", "search", threadSearch...))
	// Python: one threads:delete event for all the ids.
	add("POST", "/threads/prune", ev("threads", "delete", body("thread_ids", "strategy")...))
	add("GET", "/threads/{thread_id}", ev("threads", "read", tid))
	add("PATCH", "/threads/{thread_id}", ev("threads", "update", with(body("metadata"), tid)...))
	add("DELETE", "/threads/{thread_id}", ev("threads", "delete", tid))
	add("GET", "/threads/{thread_id}/state", ev("threads", "read", tid))
	add("GET", "/threads/{thread_id}/storage", ev("threads", "read", tid))
	add("GET", "/threads/{thread_id}/state/{checkpoint_id}", ev("threads", "read", tid))
	add("POST", "/threads/{thread_id}/state/checkpoint", ev("threads", "read", tid))
	// The JS server reads the thread before it updates the state.
	add("POST", "/threads/{thread_id}/state", ev("threads", "update", tid), may(ev("threads", "read", tid)))
	add("GET", "/threads/{thread_id}/history", ev("threads", "read", tid))
	add("POST", "/threads/{thread_id}/history", ev("threads", "read", tid))
	add("GET", "/threads/{thread_id}/stream", ev("threads", "read", tid))
	add("POST", "/threads/{thread_id}/copy", ev("threads", "read", tid), ev("threads", "create", tid))
	// The streaming protocol (SDK threads.stream()): commands can start runs
	// (run.start, input.respond) as well as read state, so they count as run
	// creation; the event stream is a read.
	add("POST", "/threads/{thread_id}/commands", ev("threads", "create_run", tid), may(ev("threads", "read", tid)))
	add("GET", "/threads/{thread_id}/stream/events", ev("threads", "read", tid))
	add("POST", "/threads/{thread_id}/stream/events", ev("threads", "read", tid))

	aidPath := path("assistant_id")

	// Runs are thread events.
	// The servers hand the handler a graph's id as its assistant's
	// (uuid5 of the graph id): the adapters compare it so.
	runCreate := append(with(body("metadata", "multitask_strategy", "if_not_exists", "after_seconds"),
		id(Field{Name: "assistant_id", From: FromBody})),
		Field{Name: "kwargs", From: FromBodyGroup, Keys: []string{"input", "command", "config", "context", "stream_mode",
			"interrupt_before", "interrupt_after", "webhook", "feedback_keys", "checkpoint", "checkpoint_id",
			"checkpoint_during", "durability", "stream_subgraphs", "stream_resumable"}})
	// A run on an assistant a user created also fires assistants:read
	// (Python: the server checks the assistant's owner with the user's
	// handler; system assistants skip it); a run the request waits for or
	// streams fires threads:read when the server joins it.
	assistantRead := may(ev("assistants", "read", id(Field{Name: "assistant_id", From: FromBody})))
	for _, suffix := range []string{"", "/stream", "/wait"} {
		thread := []EventSpec{ev("threads", "create_run", with(runCreate, tid)...), assistantRead}
		stateless := []EventSpec{ev("threads", "create_run", runCreate...), assistantRead}
		if suffix != "" {
			thread = append(thread, may(ev("threads", "read", tid)))
			stateless = append(stateless, may(ev("threads", "read")))
		}
		add("POST", "/threads/{thread_id}/runs"+suffix, thread...)
		add("POST", "/runs"+suffix, stateless...)
	}
	// LangGraph runs the create_run handler once per run of a batch.
	batch := ev("threads", "create_run", runCreate...)
	batch.EachBodyItem = true
	batchAssistant := assistantRead
	batchAssistant.EachBodyItem = true
	add("POST", "/runs/batch", batch, batchAssistant)
	// Listing a thread's runs reads the thread first.
	add("GET", "/threads/{thread_id}/runs", ev("threads", "search", tid), may(ev("threads", "read", tid)))
	rid := path("run_id")
	add("GET", "/threads/{thread_id}/runs/{run_id}", ev("threads", "read", tid, rid))
	add("GET", "/threads/{thread_id}/runs/{run_id}/join", ev("threads", "read", tid, rid))
	add("GET", "/threads/{thread_id}/runs/{run_id}/stream", ev("threads", "read", tid, rid))
	add("DELETE", "/threads/{thread_id}/runs/{run_id}", ev("threads", "delete", tid, rid))
	// Cancelling is an update whose action (interrupt, the default, or
	// rollback) is a query parameter.
	action := Field{Name: "action", From: FromQuery}
	add("POST", "/threads/{thread_id}/runs/{run_id}/cancel", ev("threads", "update", tid, rid, action))
	add("POST", "/runs/cancel", ev("threads", "update", append(body("thread_id", "run_ids", "status"), action)...))
	add("GET", "/runs/{run_id}/stream", ev("threads", "read", rid))

	// The dev servers' test and debug hooks (the JS and Python servers wipe
	// all storage on /internal/truncate; the Python one dumps a raw thread,
	// deploys and profiles) never pass the edge.
	blocked("POST", "/internal/truncate")
	blocked("GET", "/internal/debug/thread/{thread_id}")
	blocked("GET", "/deploy")
	blocked("POST", "/deploy")
	blocked("GET", "/deploy/{operation_id}/stream")
	blocked("GET", "/profile")
	// MCP and A2A (Python): JSON-RPC endpoints whose handlers run
	// assistants and threads on the caller's behalf, through in-process
	// calls that fire their own events (agents.go). GET /mcp (405) and
	// DELETE /mcp (404) run nothing, DELETE /a2a/{assistant_id} neither
	// (405); the agent cards read the assistant. The server authenticates
	// them all.
	rpc := func(pattern string, d *RPC) {
		rs = append(rs, Route{Method: "POST", Pattern: pattern, RPC: d})
	}
	rpc("/mcp", MCPDispatch())
	signedIn("GET", "/mcp")
	signedIn("DELETE", "/mcp")
	rpc("/a2a/{assistant_id}", A2ADispatch())
	signedIn("DELETE", "/a2a/{assistant_id}")
	card := ev("assistants", "read", id(aidPath))
	add("GET", "/a2a/{assistant_id}", card)
	add("GET", "/a2a/{assistant_id}/.well-known/agent-card.json", card)
	add("GET", "/a2a/{assistant_id}/.well-known/agent.json", card)
	// The server's default card names its assistant in ?assistant_id=, or
	// in its environment (DEFAULT_A2A_ASSISTANT_ID), unseen at the edge.
	add("GET", "/.well-known/agent-card.json", ev("assistants", "read", Field{Name: "assistant_id", From: FromQuery, ID: true}))

	// Crons.
	// The SDKs send a cron's run flat (assistant_id, input, config, webhook,
	// schedule, ...); the server hands the whole body to the handler as
	// value.payload.
	payload := Field{Name: "payload", From: FromBodyObject}
	cronCreate := append([]Field{payload}, body("schedule", "cron_id", "end_time", "metadata")...)
	cronSearch := body("assistant_id", "thread_id", "limit", "offset")
	cid := path("cron_id")
	// Python: a cron on a thread reads the thread; cron searches and
	// counts also fire threads:search (the in-memory runtime filters crons
	// through their threads).
	add("POST", "/runs/crons", ev("crons", "create", cronCreate...))
	add("POST", "/threads/{thread_id}/runs/crons", ev("crons", "create", with(cronCreate, tid)...), may(ev("threads", "read", tid)))
	add("POST", "/runs/crons/search", ev("crons", "search", cronSearch...), may(ev("threads", "search")))
	add("POST", "/runs/crons/count", ev("crons", "search", cronSearch...), may(ev("threads", "search")))
	add("GET", "/runs/crons/{cron_id}", ev("crons", "read", cid))
	add("PATCH", "/runs/crons/{cron_id}", ev("crons", "update", cid, payload, Field{Name: "schedule", From: FromBody}))
	add("DELETE", "/runs/crons/{cron_id}", ev("crons", "delete", cid))

	// Assistants.
	aid := path("assistant_id")
	add("POST", "/assistants", ev("assistants", "create", body("assistant_id", "graph_id", "config", "context", "metadata", "if_exists", "name", "description")...))
	assistantSearch := body("graph_id", "metadata", "limit", "offset")
	add("POST", "/assistants/search", ev("assistants", "search", assistantSearch...))
	add("POST", "/assistants/count", ev("assistants", "search", assistantSearch...))
	for _, suffix := range []string{"", "/graph", "/schemas", "/subgraphs", "/subgraphs/{namespace}"} {
		add("GET", "/assistants/{assistant_id}"+suffix, ev("assistants", "read", aid))
	}
	add("PATCH", "/assistants/{assistant_id}", ev("assistants", "update", with(body("graph_id", "config", "metadata", "name", "description"), aid)...))
	// Python: deleting an assistant cancels its runs (threads:update) and,
	// with ?delete_threads=true, deletes its threads (threads:delete, each
	// through the handler: those it refuses are skipped).
	add("DELETE", "/assistants/{assistant_id}", ev("assistants", "delete", aid, Field{Name: "delete_threads", From: FromQuery}),
		may(ev("threads", "update")), may(ev("threads", "delete")))
	add("POST", "/assistants/{assistant_id}/latest", ev("assistants", "update", with(body("version"), aid)...))
	add("POST", "/assistants/{assistant_id}/versions", ev("assistants", "read", aid))

	// Store. What a store event acts on (its namespace, or namespace
	// prefix, and key) comes from the query or the body: bound (Field.ID).
	ns := func(key string) Field { return Field{Name: "namespace", From: FromBody, Key: key, ID: true} }
	storeKey := Field{Name: "key", From: FromBody, ID: true}
	add("PUT", "/store/items", ev("store", "put", ns(""), storeKey, Field{Name: "value", From: FromBody}, Field{Name: "index", From: FromBody}))
	add("GET", "/store/items", ev("store", "get",
		Field{Name: "namespace", From: FromQueryDotted, ID: true}, Field{Name: "key", From: FromQuery, ID: true}))
	add("DELETE", "/store/items", ev("store", "delete", ns(""), storeKey))
	add("POST", "/store/items/search", ev("store", "search", ns("namespace_prefix"),
		Field{Name: "filter", From: FromBody}, Field{Name: "limit", From: FromBody},
		Field{Name: "offset", From: FromBody}, Field{Name: "query", From: FromBody}))
	add("POST", "/store/namespaces", ev("store", "list_namespaces", ns("prefix"),
		Field{Name: "suffix", From: FromBody}, Field{Name: "max_depth", From: FromBody},
		Field{Name: "limit", From: FromBody}, Field{Name: "offset", From: FromBody}))
	for i := range rs {
		rs[i].Builtin = true
	}
	return rs
}

// Mounted returns rs with every pattern under prefix ("/api"), as a server
// mounted there serves them; "" returns rs unchanged.
func Mounted(rs []Route, prefix string) []Route {
	if prefix == "" {
		return rs
	}
	out := make([]Route, len(rs))
	for i, r := range rs {
		if r.Pattern == "/" {
			r.Pattern = prefix
		} else {
			r.Pattern = prefix + r.Pattern
		}
		out[i] = r
	}
	return out
}
