package declared

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
)

// CostLimit bounds what one expression may cost for one user, in CEL's cost
// units (about one per operation, one per 10 characters a string function
// reads). CEL estimates an expression's worst case from the sizes of its
// inputs, which the API bounds (sizes below); an expression whose estimate
// is over the limit is refused when the mapping is compiled, as the API
// server refuses a CRD's validation rule over its budget. Since every
// input is bounded, the estimate bounds every evaluation, and evaluations
// are not metered one by one: metering was half of a mapped plan's CPU. At
// 100,000 users a mapping cannot stall the loop. Kubernetes allows a
// validation rule a hundred times more, but runs it once per object, not
// once per user.
const CostLimit = 10_000

// Mapping is a provider's compiled attributeMapping: how the attributes a
// UserSync declares are written to the vendor. The nil *Mapping writes them
// as declared (no entries, unmappedAttributes Send).
type Mapping struct {
	// key names the mapping's spec: two compilations of one spec (a client
	// rebuilt for another field of the provider) have the same key.
	key     string
	entries []entry
	// drop: unmappedAttributes is Drop.
	drop bool
	// named are the declared attributes an entry names, and the vendor
	// names entries write: a declared attribute of such a name is written
	// by its entry only (or not at all), never passed through as unmapped.
	named map[string]bool
	// ignored are the vendor names nothing may write.
	ignored map[string]bool
}

type entry struct {
	index      int
	attribute  string
	to         string
	createOnly bool
	program    cel.Program
	// memo, when the expression reads only some of the user's fields and
	// attributes by name, remembers its results by their values.
	memo *memo
	// concat, when the expression only joins strings, computes it in Go.
	concat concat
}

// name says which entry this is, for messages: "attributeMapping[2] (to
// hs_plan)".
func (e *entry) name() string {
	return fmt.Sprintf("attributeMapping[%d] (to %s)", e.index, e.to)
}

// Result is a user as the vendor gets it.
type Result struct {
	// User carries the written attributes; its hash is what the record
	// stores, so a mapping change rewrites exactly the users whose written
	// values change.
	User providers.User
	// CreateOnly are the values written only when the user is created.
	CreateOnly map[string]any
}

// Compile checks a provider's attributeMapping and compiles its
// expressions. The error names the entry and says what is wrong; the engine
// shows it as the provider's Ready=False reason InvalidMapping. targets,
// when the vendor client implements it, refuses names the vendor does not
// allow.
func Compile(spec *usersv1.ProviderSpec, targets providers.AttributeTargets) (*Mapping, error) {
	if len(spec.AttributeMapping) == 0 && spec.UnmappedAttributes != usersv1.UnmappedDrop {
		return nil, nil
	}
	key, err := json.Marshal([]any{spec.AttributeMapping, spec.UnmappedAttributes})
	if err != nil {
		return nil, fmt.Errorf("attributeMapping: %w", err)
	}
	m := &Mapping{key: string(key), drop: spec.UnmappedAttributes == usersv1.UnmappedDrop, named: map[string]bool{}, ignored: map[string]bool{}}
	var env *cel.Env
	writers := map[string]int{}
	for i := range spec.AttributeMapping {
		am := &spec.AttributeMapping[i]
		e := entry{index: i, attribute: am.Attribute, to: am.To, createOnly: am.CreateOnly}
		if e.to == "" {
			e.to = e.attribute
		}
		if e.attribute != "" {
			m.named[e.attribute] = true
		}
		if am.Ignore {
			if am.To != "" || e.attribute == "" {
				m.ignored[e.to] = true
			}
			continue
		}
		if prev, dup := writers[e.to]; dup {
			return nil, fmt.Errorf("attributeMapping[%d] and attributeMapping[%d] both write %s: each vendor attribute takes one entry", prev, i, e.to)
		}
		writers[e.to] = i
		m.named[e.to] = true
		kind := providers.KindAny
		if am.Expression != "" {
			if env == nil {
				var err error
				if env, err = newEnv(); err != nil {
					return nil, fmt.Errorf("building the expression environment: %w", err)
				}
			}
			prg, k, deps, cc, err := compileExpression(env, am.Expression)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.name(), err)
			}
			e.program, kind, e.concat = prg, k, cc
			if deps != nil {
				e.memo = newMemo(deps)
			}
		}
		if targets != nil {
			if err := targets.CheckTarget(e.to, kind); err != nil {
				return nil, fmt.Errorf("%s: %w", e.name(), err)
			}
		}
		m.entries = append(m.entries, e)
	}
	for to, i := range writers {
		if m.ignored[to] {
			return nil, fmt.Errorf("attributeMapping[%d] writes %s, which an ignore entry never writes", i, to)
		}
	}
	return m, nil
}

// Key names what the mapping writes: equal for two compilations of one
// attributeMapping and unmappedAttributes, "" for the nil Mapping. Hashes
// computed with one mapping hold for another of the same key.
func (m *Mapping) Key() string {
	if m == nil {
		return ""
	}
	return m.key
}

// newEnv is the expressions' environment: one variable, user, and CEL's
// string extensions (lowerAscii, split, replace, ...).
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("user", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
		cel.CrossTypeNumericComparisons(true),
	)
}

// compileExpression parses and checks an expression, refuses a result that
// cannot be a scalar and an estimated cost over CostLimit, and returns its
// program with the kind of value it returns and, when it reads the user
// only by named fields and attributes, those (see memo).
func compileExpression(env *cel.Env, expr string) (cel.Program, providers.ValueKind, []dep, concat, error) {
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, "", nil, nil, fmt.Errorf("expression does not compile: %s", strings.TrimSpace(iss.Err().Error()))
	}
	kind, err := kindOf(ast.OutputType())
	if err != nil {
		return nil, "", nil, nil, err
	}
	est, err := env.EstimateCost(ast, sizes{})
	if err != nil {
		return nil, "", nil, nil, fmt.Errorf("estimating the expression's cost: %w", err)
	}
	if est.Max > CostLimit {
		return nil, "", nil, nil, fmt.Errorf("expression may cost %d per user, over the limit of %d: simplify it (fewer comprehensions or string operations)", est.Max, CostLimit)
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, "", nil, nil, fmt.Errorf("expression cannot run: %w", err)
	}
	return prg, kind, depsOf(ast.NativeRep()), concatOf(ast.NativeRep()), nil
}

// kindOf is the kind of value an expression's static type says it returns.
func kindOf(t *cel.Type) (providers.ValueKind, error) {
	switch t.Kind() {
	case types.StringKind:
		return providers.KindString, nil
	case types.IntKind, types.UintKind, types.DoubleKind:
		return providers.KindNumber, nil
	case types.BoolKind:
		return providers.KindBool, nil
	case types.DynKind, types.NullTypeKind, types.AnyKind:
		return providers.KindAny, nil
	}
	return "", fmt.Errorf("expression returns %s; it must return a string, a number, a boolean or null", t.String())
}

// sizes bounds the sizes of the user's values for the cost estimate, from
// the API's own limits: at most 16 attributes (8 declared, 8 defaults),
// strings of at most 254 characters (an email; names and attribute values
// are shorter).
type sizes struct{}

func (sizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	// A value read from the user (a path from the variable) is a string,
	// a map of attributes or a scalar: 254 bounds them all.
	if len(n.Path()) > 0 {
		return &checker.SizeEstimate{Min: 0, Max: 254}
	}
	switch n.Type().Kind() {
	case types.StringKind:
		return &checker.SizeEstimate{Min: 0, Max: 254}
	case types.MapKind, types.ListKind:
		return &checker.SizeEstimate{Min: 0, Max: 16}
	}
	return nil
}

func (sizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// Map writes a declared user, with the UserSync's defaults filled in, in
// the vendor's vocabulary. An expression that fails for this user (reads a
// missing attribute, returns a list) is an error naming the entry: the
// record fails with it, the others are written.
func (m *Mapping) Map(u *usersv1.User, defaults *usersv1.UserDefaults) (Result, error) {
	return m.mapUser(u, defaults, true)
}

// mapUser is Map; without withCreateOnly the createOnly entries are not
// evaluated (a hash and a comparison do not cover them).
func (m *Mapping) mapUser(u *usersv1.User, defaults *usersv1.UserDefaults, withCreateOnly bool) (Result, error) {
	attrs := declaredAttributes(u, defaults)
	pu := providers.User{Key: u.Key, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName}
	if m == nil {
		pu.Attributes = attrs
		return Result{User: pu}, nil
	}
	// The entries' values first (expressions read the declared
	// attributes), then attrs becomes the written attributes in place.
	var buf [16]written
	values := buf[:0]
	var act *activation // built by the first evaluation
	var createOnly map[string]any
	for i := range m.entries {
		e := &m.entries[i]
		if e.createOnly && !withCreateOnly {
			continue
		}
		v, ok, err := e.value(u, attrs, &act)
		if err != nil {
			return Result{}, err
		}
		switch {
		case !ok:
		case e.createOnly:
			if createOnly == nil {
				createOnly = map[string]any{}
			}
			createOnly[e.to] = v
		default:
			values = append(values, written{e.to, v})
		}
	}
	for k := range attrs {
		if m.drop || m.named[k] || m.ignored[k] {
			delete(attrs, k)
		}
	}
	if len(values) > 0 && attrs == nil {
		attrs = make(map[string]any, len(values))
	}
	for _, w := range values {
		attrs[w.name] = w.value
	}
	if len(attrs) > 0 {
		pu.Attributes = attrs
	}
	return Result{User: pu, CreateOnly: createOnly}, nil
}

type written struct {
	name  string
	value any
}

// activation binds the variable user for the evaluations of one user.
type activation struct{ user userVal }

func (a *activation) ResolveName(name string) (any, bool) {
	if name != "user" {
		return nil, false
	}
	return &a.user, true
}

func (a *activation) Parent() interpreter.Activation { return nil }

// value is what an entry writes for a user; false when nothing. *act is
// the user's activation, built by the first evaluation that needs it.
func (e *entry) value(u *usersv1.User, attrs map[string]any, act **activation) (any, bool, error) {
	if e.program == nil {
		v, ok := attrs[e.attribute]
		return v, ok, nil
	}
	if e.concat != nil {
		if s, ok := e.concat.value(u, attrs); ok {
			return s, true, nil
		}
		return e.eval(u, attrs, act)
	}
	if e.memo == nil {
		return e.eval(u, attrs, act)
	}
	var kb [128]byte
	key, ok := e.memo.key(kb[:0], u, attrs)
	if !ok {
		return e.eval(u, attrs, act)
	}
	if r, hit := e.memo.get(key); hit {
		return r.value, r.ok, r.err
	}
	v, ok, err := e.eval(u, attrs, act)
	e.memo.put(key, memoResult{v, ok, err})
	return v, ok, err
}

// eval runs the entry's expression.
func (e *entry) eval(u *usersv1.User, attrs map[string]any, act **activation) (any, bool, error) {
	if *act == nil {
		*act = &activation{user: userVal{u: u, attrs: attrs}}
	}
	out, _, err := e.program.Eval(*act)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %s", e.name(), evalMessage(err))
	}
	return scalar(e, out)
}

// scalar converts an expression's value to an attribute value: a string, a
// float64 (every number, as attributes hold them) or a bool; null writes
// nothing.
func scalar(e *entry, v ref.Val) (any, bool, error) {
	switch x := v.Value().(type) {
	case string, bool:
		return x, true, nil
	case int64:
		return float64(x), true, nil
	case uint64:
		return float64(x), true, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, false, fmt.Errorf("%s: expression returned %v, which JSON cannot carry", e.name(), x)
		}
		return x, true, nil
	}
	if v.Type() == types.NullType {
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("%s: expression returned a %s; it must return a string, a number, a boolean or null", e.name(), v.Type().TypeName())
}

// evalMessage is CEL's evaluation error.
func evalMessage(err error) string {
	return "expression failed: " + err.Error()
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// declaredAttributes are a user's attributes decoded, with the defaults it
// does not set; nil when there are none. Values that are not scalars are
// left out (InvalidAttributes fails such a record).
func declaredAttributes(u *usersv1.User, defaults *usersv1.UserDefaults) map[string]any {
	n := len(u.Attributes)
	if defaults != nil {
		n += len(defaults.Attributes)
	}
	if n == 0 {
		return nil
	}
	out := make(map[string]any, n)
	if defaults != nil {
		for k, v := range defaults.Attributes {
			if val, err := usersv1.ScalarOf(v); err == nil {
				out[k] = val
			}
		}
	}
	for k, v := range u.Attributes {
		if val, err := usersv1.ScalarOf(v); err == nil {
			out[k] = val
		} else {
			delete(out, k)
		}
	}
	return out
}
