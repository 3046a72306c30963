package propel

import (
	"fmt"

	"github.com/usersync/usersync-operator/internal/providers"
)

// identityFields are written from the user and the provider's source; a
// mapping may not write them.
var identityFields = map[string]bool{
	"source": true, "sourceId": true, "email": true, "firstName": true, "lastName": true,
	"id": true, "parentId": true, "attributes": true,
}

// CheckTarget implements providers.AttributeTargets: a mapping may not write
// the fields the client writes from the user (email, names, source and
// sourceId), and Propel's fixed user fields (userFields) take text, so an
// expression whose value is a number or a boolean is refused for them
// (write it to an attribute of another name, which Propel types).
func (c *Client) CheckTarget(name string, kind providers.ValueKind) error {
	switch {
	case identityFields[name]:
		return fmt.Errorf("field %s of Propel users is written from the user (its key, email and names) or the provider's source; map to another name", name)
	case userFields[name] && (kind == providers.KindNumber || kind == providers.KindBool):
		return fmt.Errorf("field %s of Propel users takes text, but the expression returns a %s; convert it with string(...) or map to an attribute", name, kind)
	}
	return nil
}
