// Module hooks for server.mjs (registered with node:module register()).
//
// resolve: the adapter under test lives in examples/langgraph/upstream/,
// outside this Node project, so its `import "@langchain/langgraph-sdk/auth"`
// finds no node_modules on its way up. A bare specifier that does not resolve
// from where it is imported is resolved again from this project
// (data.parentURL), so the adapter loads the same packages as the server. In a
// real deployment the adapter sits in the project that installs
// @langchain/langgraph-sdk and needs none of this.
let parentURL;

export async function initialize(data) {
  parentURL = data.parentURL;
}

const bare = (s) => !s.startsWith(".") && !s.startsWith("/") && !/^[a-z][a-z0-9+.-]*:/i.test(s);

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err?.code !== "ERR_MODULE_NOT_FOUND" || !bare(specifier) || context.parentURL === parentURL) throw err;
    return next(specifier, { ...context, parentURL });
  }
}

// The server reads dependency versions with a bare `import("<pkg>/package.json")`,
// which Node 20 refuses without `with {type: "json"}` (the CLI's tsx loader
// allows it); the server would then warn that every LangGraph package is
// version 0.0.0 and report no version in /info. Supply the attribute.
export async function load(url, context, next) {
  if (url.startsWith("file:") && url.endsWith("/package.json") && context.importAttributes?.type === undefined) {
    return next(url, { ...context, format: "json", importAttributes: { ...context.importAttributes, type: "json" } });
  }
  return next(url, context);
}
