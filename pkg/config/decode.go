package config

import (
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	posType       = reflect.TypeOf(Pos{})
	unmarshalType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	altType       = reflect.TypeOf((*alternative)(nil)).Elem()
)

// alternative is implemented by types whose YAML takes several shapes (a
// name or a list): for a given node it returns the schema to check the node
// against and where the decoded value lives, or a nil type when the shape
// needs no checking.
type alternative interface {
	yamlAlternative(n *yaml.Node) (reflect.Type, reflect.Value)
}

// expandEnv replaces ${NAME} and ${NAME:-default} in every scalar value (not
// in keys); "$${" stands for a literal "${". An unset variable without a
// default is an error at the scalar's position.
func expandEnv(n *yaml.Node, lookup func(string) (string, bool), sink *errorSink) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			expandEnv(c, lookup, sink)
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			expandEnv(n.Content[i], lookup, sink)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		out, err := expandString(n.Value, lookup)
		if err != "" {
			sink.add(Pos{Line: n.Line, Column: n.Column}, "%s", err)
			return
		}
		n.Value = out
		if n.Tag == "!!null" || n.Tag == "" {
			n.Tag = "!!str"
		}
	}
}

// expandString expands one scalar; the second result is an error message.
func expandString(s string, lookup func(string) (string, bool)) (string, string) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(s[i:], "${") {
			b.WriteByte(s[i])
			i++
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", "unterminated ${ in value"
		}
		ref := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			return "", "invalid environment variable reference ${" + ref + "}"
		}
		v, ok := lookup(name)
		switch {
		case ok && v != "":
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		case ok:
			// Set but empty: an empty value is almost always a deployment mistake
			// for the fields configuration reads from the environment.
			return "", "environment variable " + name + " is empty"
		default:
			return "", "environment variable " + name + " is not set (use ${" + name + ":-default} for a default)"
		}
		i += end + 1
	}
	return b.String(), ""
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// checkKnownFields walks the YAML tree against the Go type and reports every
// key the schema does not know, so a typo is an error rather than a silently
// ignored rule.
func checkKnownFields(n *yaml.Node, t reflect.Type, sink *errorSink) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if reflect.PointerTo(t).Implements(altType) {
		alt, _ := reflect.New(t).Interface().(alternative).yamlAlternative(n)
		if alt != nil {
			checkKnownFields(n, alt, sink)
		}
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalType) {
		return // the type validates its own shape
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // yaml.v3 reports the type mismatch
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			f, ok := fields[k.Value]
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				sort.Strings(known)
				sink.add(Pos{Line: k.Line, Column: k.Column}, "unknown field %q (known fields: %s)", k.Value, strings.Join(known, ", "))
				continue
			}
			checkKnownFields(n.Content[i+1], f.Type, sink)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for _, c := range n.Content {
			checkKnownFields(c, t.Elem(), sink)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 1; i < len(n.Content); i += 2 {
			checkKnownFields(n.Content[i], t.Elem(), sink)
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := make(map[string]reflect.StructField, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

// fillPositions sets every `Pos` field of a decoded struct to the position of
// the mapping it was decoded from.
func fillPositions(n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.CanAddr() && v.Addr().Type().Implements(altType) {
		if _, inner := v.Addr().Interface().(alternative).yamlAlternative(n); inner.IsValid() {
			fillPositions(n, inner)
		}
		return
	}
	switch v.Kind() {
	case reflect.Map:
		if n.Kind != yaml.MappingNode || v.Type().Elem().Kind() != reflect.Pointer {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if e := v.MapIndex(reflect.ValueOf(n.Content[i].Value)); e.IsValid() {
				fillPositions(n.Content[i+1], e)
			}
		}
	case reflect.Struct:
		if v.Type().Implements(unmarshalType) || reflect.PointerTo(v.Type()).Implements(unmarshalType) {
			return
		}
		if f := v.FieldByName("Pos"); f.IsValid() && f.Type() == posType && f.CanSet() {
			f.Set(reflect.ValueOf(Pos{Line: n.Line, Column: n.Column}))
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := yamlFields(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			if f, ok := fields[n.Content[i].Value]; ok {
				fillPositions(n.Content[i+1], v.FieldByIndex(f.Index))
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i := 0; i < v.Len() && i < len(n.Content); i++ {
			fillPositions(n.Content[i], v.Index(i))
		}
	}
}
