// Package expr is langgate's CEL: environments built from the variables a
// place in the configuration declares, expressions compiled and
// type-checked against them with errors at their file position, programs
// run under a cost limit, and results converted to JSON.
//
// Each place gets only the variables it can bind when it runs: a user
// mapping sees `claims`, a handler sees the user, the event and the
// request. An expression naming anything else is a load error.
package expr

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/langgate/langgate/pkg/config"
)

// CostLimit bounds the work one expression may do on one request, so a
// policy cannot turn a large body into a denial of service.
const CostLimit = 1_000_000

// Var declares one variable an environment binds.
type Var struct {
	Name string
	Type *cel.Type
}

// NewEnv builds a CEL environment that declares exactly vars, with
// langgate's library: the strings, lists and sets extensions,
// cross-type numeric comparison, and s.glob(pattern).
func NewEnv(vars ...Var) (*cel.Env, error) {
	opts := make([]cel.EnvOption, 0, len(vars)+5)
	for _, v := range vars {
		opts = append(opts, cel.Variable(v.Name, v.Type))
	}
	opts = append(opts,
		ext.Strings(),
		ext.Lists(),
		ext.Sets(),
		cel.CrossTypeNumericComparisons(true),
		// s.glob(pattern): shell-style match of s against pattern ("*" and
		// "?" never cross "/"; "[a-z]" classes), as Go's path.Match.
		cel.Function("glob", cel.MemberOverload("string_glob_string",
			[]*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
			cel.BinaryBinding(func(s, pattern ref.Val) ref.Val {
				ok, err := path.Match(string(pattern.(types.String)), string(s.(types.String)))
				if err != nil {
					return types.NewErr("glob: bad pattern %q: %v", pattern, err)
				}
				return types.Bool(ok)
			}))),
	)
	return cel.NewEnv(opts...)
}

// JSONMap is the CEL type of a JSON object: string keys, any values.
var JSONMap = cel.MapType(cel.StringType, cel.DynType)

// Program is a compiled expression with the source it came from.
type Program struct {
	Source string
	Pos    config.Pos
	prg    cel.Program
	vars   []string // the variables it reads, from the checked expression
	paths  map[string][]Path
}

// Reads reports whether the expression reads the variable name.
func (p *Program) Reads(name string) bool { return slices.Contains(p.vars, name) }

// Compile type-checks and plans one expression. want, when not nil, is the
// type the expression must produce (dyn is accepted: it is checked when the
// expression runs). Problems are reported at their file position.
func Compile(env *cel.Env, file string, e config.Expr, want *cel.Type) (*Program, error) {
	ast, iss := env.Compile(e.Source)
	if iss != nil && iss.Err() != nil {
		var errs config.ErrorList
		for _, ce := range iss.Errors() {
			loc := ce.Location
			errs = append(errs, &config.Error{File: file, Pos: e.At(loc.Line(), loc.Column()), Msg: "CEL: " + firstLine(ce.Message)})
		}
		return nil, errs
	}
	if want != nil {
		out := ast.OutputType()
		// Assignable, not exact: {"$or": [ ... ]} is a map(string, list(...)),
		// which a map(string, dyn) takes.
		if !want.IsAssignableType(out) && !out.IsExactType(cel.DynType) {
			return nil, config.ErrorList{{File: file, Pos: e.Pos, Msg: fmt.Sprintf("CEL: expression %q must produce %s, but produces %s", e.Source, want, out)}}
		}
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(CostLimit))
	if err != nil {
		return nil, config.ErrorList{{File: file, Pos: e.Pos, Msg: "CEL: " + err.Error()}}
	}
	var vars []string
	for _, r := range ast.NativeRep().ReferenceMap() {
		if r.Name != "" && len(r.OverloadIDs) == 0 && !slices.Contains(vars, r.Name) {
			vars = append(vars, r.Name)
		}
	}
	slices.Sort(vars)
	return &Program{Source: e.Source, Pos: e.Pos, prg: prg, vars: vars, paths: readPaths(ast.NativeRep(), vars)}, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Eval runs the program against an activation.
func (p *Program) Eval(act interpreter.Activation) (ref.Val, error) {
	v, _, err := p.prg.Eval(act)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Source, err)
	}
	return v, nil
}

// ErrNotJSON is wrapped when an expression's result cannot be sent as JSON.
var ErrNotJSON = errors.New("value cannot be represented as JSON")

// ToJSON converts a CEL value to plain Go values that encoding/json writes:
// string, bool, int64, uint64, float64, nil, []any and map[string]any.
func ToJSON(v ref.Val) (any, error) {
	switch x := v.(type) {
	case types.String:
		return string(x), nil
	case types.Bool:
		return bool(x), nil
	case types.Int:
		return int64(x), nil
	case types.Uint:
		return uint64(x), nil
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: %v", ErrNotJSON, f)
		}
		return f, nil
	case types.Null:
		return nil, nil
	case *types.Err:
		return nil, x
	}
	switch x := v.(type) {
	case traits.Mapper:
		out := map[string]any{}
		it := x.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("%w: map key %v is not a string", ErrNotJSON, k)
			}
			ev, err := ToJSON(x.Get(k))
			if err != nil {
				return nil, err
			}
			out[string(ks)] = ev
		}
		return out, nil
	case traits.Lister:
		n, ok := x.Size().(types.Int)
		if !ok {
			return nil, fmt.Errorf("%w: list of unknown size", ErrNotJSON)
		}
		out := make([]any, 0, int(n))
		for i := types.Int(0); i < n; i++ {
			ev, err := ToJSON(x.Get(i))
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNotJSON, v.Type().TypeName())
}
