// Package langgraph carries the LangGraph seed policy (langgate.yaml), the
// configuration `langgate serve --dev` runs when given none.
package langgraph

import _ "embed"

// Policy is the text of examples/langgraph/langgate.yaml.
//
//go:embed langgate.yaml
var Policy []byte

// PolicyName labels the embedded policy in error messages.
const PolicyName = "examples/langgraph/langgate.yaml"
