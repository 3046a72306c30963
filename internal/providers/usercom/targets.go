package usercom

import (
	"fmt"

	"github.com/usersync/usersync-operator/internal/providers"
)

// CheckTarget implements providers.AttributeTargets: a mapping may not write
// the fields the client writes from the user (custom_id, email, first_name,
// last_name: reservedAttrs).
func (c *Client) CheckTarget(name string, _ providers.ValueKind) error {
	if reservedAttrs[name] {
		return fmt.Errorf("user.com's field %s is written from the user (its key, email and names); map to another name", name)
	}
	return nil
}
