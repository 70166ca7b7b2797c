// The shipped adapter (examples/langgraph/upstream/auth.mjs) with a record
// of every event the LangGraph JS server hands it.
//
// A test-only wrapper, loaded from langgraph.values.json: authenticate and
// the handler are the adapter's own; around the handler, one JSON line per
// event is appended to VALUE_LOG: {probe, event, value, accepted}, where
// value is what the server handed the handler (before the adapter looked
// at it) and accepted says whether the adapter let the event run. Used by
// TestParserDifferential (values_test.go).
import { appendFileSync } from "node:fs";
import { Auth } from "@langchain/langgraph-sdk/auth";
import { auth as adapter } from "../../examples/langgraph/upstream/auth.mjs";

const file = process.env.VALUE_LOG;
const PROBE = "e2e_probe";

// The adapter's callbacks, as its Auth object holds them.
const authenticateFn = adapter["~handlerCache"]?.authenticate;
const onAll = adapter["~handlerCache"]?.callbacks?.["*"];
if (typeof authenticateFn !== "function" || typeof onAll !== "function") {
  throw new Error("recording_auth.mjs: the adapter's Auth object no longer keeps its callbacks in ~handlerCache");
}

const plain = (v) => JSON.parse(JSON.stringify(v ?? null));

export const auth = new Auth()
  .authenticate(async (request) => {
    const user = await authenticateFn(request);
    return { ...user, [PROBE]: request.headers.get("x-e2e-probe") ?? "" };
  })
  .on("*", async (args) => {
    const seen = plain(args.value);
    let accepted = false;
    try {
      const result = await onAll(args);
      accepted = true;
      return result;
    } finally {
      if (file) {
        const line = { probe: args.user?.[PROBE] ?? "", event: `${args.resource}:${args.action}`, value: seen, accepted };
        appendFileSync(file, `${JSON.stringify(line)}\n`);
      }
    }
  });
