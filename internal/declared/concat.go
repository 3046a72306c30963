package declared

import (
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// concat is an expression that only joins string literals, the user's
// fields and attributes with +, such as user.firstName + ' ' +
// user.lastName: the most common expression whose value differs for every
// user, so its results cannot be remembered. It is computed in Go, which
// costs a tenth of CEL's interpreter; when an attribute it reads is not a
// string (or is missing), CEL evaluates it, for CEL's own result or error.
type concat []concatPart

// concatPart is a literal, a user field (key, email, firstName, lastName)
// or an attribute.
type concatPart struct {
	literal, field, attribute string
}

// concatOf returns the concat of a checked expression, or nil when it is
// not one.
func concatOf(a *celast.AST) concat {
	parts, ok := concatParts(a.Expr())
	if !ok || len(parts) < 2 {
		return nil
	}
	return parts
}

func concatParts(e celast.Expr) (concat, bool) {
	switch e.Kind() {
	case celast.CallKind:
		call := e.AsCall()
		if call.FunctionName() != operators.Add || len(call.Args()) != 2 || call.IsMemberFunction() {
			return nil, false
		}
		l, ok := concatParts(call.Args()[0])
		if !ok {
			return nil, false
		}
		r, ok := concatParts(call.Args()[1])
		if !ok {
			return nil, false
		}
		return append(l, r...), true
	case celast.LiteralKind:
		s, ok := e.AsLiteral().(types.String)
		return concat{{literal: string(s)}}, ok
	case celast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return nil, false
		}
		op := sel.Operand()
		switch {
		case op.Kind() == celast.IdentKind && op.AsIdent() == "user":
			switch f := sel.FieldName(); f {
			case "key", "email", "firstName", "lastName":
				return concat{{field: f}}, true
			}
		case op.Kind() == celast.SelectKind && !op.AsSelect().IsTestOnly() && op.AsSelect().FieldName() == "attributes" &&
			op.AsSelect().Operand().Kind() == celast.IdentKind && op.AsSelect().Operand().AsIdent() == "user":
			return concat{{attribute: sel.FieldName()}}, true
		}
	}
	return nil, false
}

// value joins the parts for a user; false when CEL must evaluate it (an
// attribute missing or not a string, where + fails or means another
// overload).
func (c concat) value(u *usersv1.User, attrs map[string]any) (string, bool) {
	var b strings.Builder
	for _, p := range c {
		switch {
		case p.field != "":
			switch p.field {
			case "key":
				b.WriteString(u.Key)
			case "email":
				b.WriteString(u.Email)
			case "firstName":
				b.WriteString(u.FirstName)
			case "lastName":
				b.WriteString(u.LastName)
			}
		case p.attribute != "":
			s, ok := attrs[p.attribute].(string)
			if !ok {
				return "", false
			}
			b.WriteString(s)
		default:
			b.WriteString(p.literal)
		}
	}
	return b.String(), true
}
