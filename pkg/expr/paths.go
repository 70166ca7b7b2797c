package expr

import (
	"slices"
	"strings"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// Path is a chain of field names an expression selects from a variable:
// value.metadata.team is ["metadata", "team"], value["key"] is ["key"],
// and an empty path is the whole variable (value passed to a function,
// iterated over, or indexed by a computed key).
type Path []string

// ReadPaths returns the paths of variable name that the expression reads,
// each once, shortest first (a path and a longer one under it are both
// listed when both are read).
func (p *Program) ReadPaths(name string) []Path { return p.paths[name] }

// readPaths collects, for every variable of vars, the paths a checked
// expression selects from it: a maximal chain of field selections,
// presence tests (has()) and indexes by a string constant, rooted at an
// identifier that names the variable.
func readPaths(a *ast.AST, vars []string) map[string][]Path {
	refs := a.ReferenceMap()
	out := map[string][]Path{}
	var visit func(e ast.Expr)
	visit = func(e ast.Expr) {
		if root, path, ok := chain(e); ok {
			if r := refs[root.ID()]; r != nil && slices.Contains(vars, r.Name) && root.AsIdent() == r.Name {
				if !slices.ContainsFunc(out[r.Name], func(p Path) bool { return slices.Equal(p, path) }) {
					out[r.Name] = append(out[r.Name], path)
				}
				return
			}
		}
		for _, c := range children(e) {
			visit(c)
		}
	}
	visit(a.Expr())
	for _, ps := range out {
		slices.SortFunc(ps, func(x, y Path) int {
			if len(x) != len(y) {
				return len(x) - len(y)
			}
			return strings.Compare(strings.Join(x, "\x00"), strings.Join(y, "\x00"))
		})
	}
	return out
}

// chain reads e as an identifier followed by field selections and
// string-constant indexes.
func chain(e ast.Expr) (root ast.Expr, path Path, ok bool) {
	switch e.Kind() {
	case ast.IdentKind:
		return e, Path{}, true
	case ast.SelectKind:
		s := e.AsSelect()
		root, path, ok := chain(s.Operand())
		if !ok {
			return nil, nil, false
		}
		return root, append(path, s.FieldName()), true
	case ast.CallKind:
		c := e.AsCall()
		switch c.FunctionName() {
		case operators.Index, operators.OptIndex, operators.OptSelect:
		default:
			return nil, nil, false
		}
		args := c.Args()
		if len(args) != 2 || args[1].Kind() != ast.LiteralKind {
			return nil, nil, false
		}
		key, isString := args[1].AsLiteral().(types.String)
		if !isString {
			return nil, nil, false
		}
		root, path, ok := chain(args[0])
		if !ok {
			return nil, nil, false
		}
		return root, append(path, string(key)), true
	}
	return nil, nil, false
}

// children are the subexpressions of e.
func children(e ast.Expr) []ast.Expr {
	switch e.Kind() {
	case ast.SelectKind:
		return []ast.Expr{e.AsSelect().Operand()}
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			return append([]ast.Expr{c.Target()}, c.Args()...)
		}
		return c.Args()
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		return []ast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()}
	case ast.ListKind:
		return e.AsList().Elements()
	case ast.MapKind:
		var out []ast.Expr
		for _, en := range e.AsMap().Entries() {
			m := en.AsMapEntry()
			out = append(out, m.Key(), m.Value())
		}
		return out
	case ast.StructKind:
		var out []ast.Expr
		for _, f := range e.AsStruct().Fields() {
			out = append(out, f.AsStructField().Value())
		}
		return out
	}
	return nil
}
