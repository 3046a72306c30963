package declared

import (
	"slices"
	"strconv"
	"strings"
	"sync"

	celast "github.com/google/cel-go/common/ast"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// memoSize bounds the results an entry remembers. Expressions over
// low-cardinality attributes (a plan, a department, a country) hit it
// rarely; one over every user's name never repeats, and stops remembering
// once it is full.
const memoSize = 4096

// dep is a value an expression reads: a field of the user (key, email,
// firstName, lastName) or, with attribute set, user.attributes.<name>.
type dep struct {
	name      string
	attribute bool
}

// depsOf lists what a checked expression reads of the user, when it reads
// the user only as user.<field> and user.attributes.<name> (presence tests
// included); nil when it reads the user otherwise (user.attributes as a
// whole, a comprehension over it): such an expression is evaluated for
// every user. CEL expressions are pure, so equal reads give equal results.
func depsOf(a *celast.AST) []dep {
	var deps []dep
	covered := map[int64]bool{} // nodes of user and user.attributes read by name
	var users []int64           // every user node, and user.attributes nodes
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.IdentKind:
			if e.AsIdent() == "user" {
				users = append(users, e.ID())
			}
		case celast.SelectKind:
			sel := e.AsSelect()
			op := sel.Operand()
			switch {
			case op.Kind() == celast.IdentKind && op.AsIdent() == "user" && sel.FieldName() == "attributes":
				users = append(users, e.ID())
				covered[op.ID()] = true
			case op.Kind() == celast.IdentKind && op.AsIdent() == "user":
				deps = append(deps, dep{name: sel.FieldName()})
				covered[op.ID()] = true
			case op.Kind() == celast.SelectKind && op.AsSelect().FieldName() == "attributes" &&
				op.AsSelect().Operand().Kind() == celast.IdentKind && op.AsSelect().Operand().AsIdent() == "user":
				deps = append(deps, dep{name: sel.FieldName(), attribute: true})
				covered[op.ID()] = true
			}
		}
	}))
	for _, id := range users {
		if !covered[id] {
			return nil
		}
	}
	slices.SortFunc(deps, func(a, b dep) int {
		if a.attribute != b.attribute {
			if a.attribute {
				return 1
			}
			return -1
		}
		return strings.Compare(a.name, b.name)
	})
	deps = slices.Compact(deps)
	if deps == nil {
		deps = []dep{} // reads nothing of the user: one result for all
	}
	return deps
}

// memo remembers an entry's results by the values its expression reads.
// Loops of several providers may map at once: it is locked.
type memo struct {
	deps []dep
	mu   sync.RWMutex
	m    map[string]memoResult
	full bool
}

type memoResult struct {
	value any
	ok    bool
	err   error
}

func newMemo(deps []dep) *memo { return &memo{deps: deps, m: map[string]memoResult{}} }

// key appends the values the expression reads to b, unambiguously; false
// once the memo is full.
func (c *memo) key(b []byte, u *usersv1.User, attrs map[string]any) ([]byte, bool) {
	c.mu.RLock()
	full := c.full
	c.mu.RUnlock()
	if full {
		return b, false
	}
	for _, d := range c.deps {
		if !d.attribute {
			var v string
			switch d.name {
			case "key":
				v = u.Key
			case "email":
				v = u.Email
			case "firstName":
				v = u.FirstName
			case "lastName":
				v = u.LastName
			}
			b = strconv.AppendInt(b, int64(len(v)), 10)
			b = append(b, ':')
			b = append(b, v...)
			continue
		}
		switch v := attrs[d.name].(type) {
		case nil:
			b = append(b, '-')
		case string:
			b = append(b, 's')
			b = strconv.AppendInt(b, int64(len(v)), 10)
			b = append(b, ':')
			b = append(b, v...)
		case float64:
			b = append(b, 'n')
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
			b = append(b, ';')
		case bool:
			b = append(b, 'b')
			b = strconv.AppendBool(b, v)
		}
	}
	return b, true
}

// get looks a key up (without allocating it).
func (c *memo) get(key []byte) (memoResult, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.m[string(key)]
	return r, ok
}

func (c *memo) put(key []byte, r memoResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= memoSize {
		c.full = true
		return
	}
	c.m[string(key)] = r
}
