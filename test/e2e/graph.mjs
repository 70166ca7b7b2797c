// The graph the e2e server serves as "agent": deterministic, no LLM. It
// answers the last input message with "echo: <its content>" and records in
// `user` the identity the server handed to graph code (from langgate's
// x-langgate-user, via the adapter's authenticate()).
import { Annotation, END, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { AIMessage } from "@langchain/core/messages";

const State = Annotation.Root({
  ...MessagesAnnotation.spec,
  user: Annotation({ reducer: (_, b) => b, default: () => "" }),
});

function text(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (typeof p === "string" ? p : p?.text ?? "")).join("");
  return "";
}

export const graph = new StateGraph(State)
  .addNode("echo", (state, config) => ({
    messages: [new AIMessage(`echo: ${text(state.messages.at(-1)?.content)}`)],
    user: config?.configurable?.langgraph_auth_user_id ?? "",
  }))
  .addEdge(START, "echo")
  .addEdge("echo", END)
  .compile();

// "slow": three steps, 300 ms apart, each writing one update. A client
// streaming its run (stream_mode "updates") must see the first update about
// 600 ms before the last: the proxies may not buffer the event stream.
const Steps = Annotation.Root({ step: Annotation({ reducer: (_, b) => b, default: () => 0 }) });
const pause = () => new Promise((r) => setTimeout(r, 300));
export const slow = new StateGraph(Steps)
  .addNode("one", async () => (await pause(), { step: 1 }))
  .addNode("two", async () => (await pause(), { step: 2 }))
  .addNode("three", async () => (await pause(), { step: 3 }))
  .addEdge(START, "one")
  .addEdge("one", "two")
  .addEdge("two", "three")
  .addEdge("three", END)
  .compile();
