package hubspot

import (
	"fmt"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers"
)

// readOnly are HubSpot properties every object has and HubSpot computes:
// a batch write naming one fails as a whole (VALIDATION_ERROR, "read only").
var readOnly = map[string]bool{
	"hs_object_id": true, "hs_createdate": true, "createdate": true, "hs_lastmodifieddate": true,
	"lastmodifieddate": true, "hs_object_source": true, "hs_object_source_id": true,
	"hs_object_source_label": true, "hs_object_source_user_id": true, "hs_object_source_detail_1": true,
	"hs_object_source_detail_2": true, "hs_object_source_detail_3": true, "hs_all_owner_ids": true,
	"hs_created_by_user_id": true, "hs_updated_by_user_id": true, "hs_merged_object_ids": true,
	"hs_was_imported": true, "hs_unique_creation_key": true, "hs_user_ids_of_all_owners": true,
	"hs_all_accessible_team_ids": true, "hs_all_team_ids": true, "hs_all_assigned_business_unit_ids": true,
}

// CheckTarget implements providers.AttributeTargets: a mapping may not write
// HubSpot's computed properties, nor the properties the client writes from
// the user itself (hs_email, hs_given_name, hs_family_name and the
// idProperty). HubSpot property names are lowercase (internal names).
func (c *Client) CheckTarget(name string, _ providers.ValueKind) error {
	switch {
	case readOnly[name]:
		return fmt.Errorf("property %s is read-only in HubSpot (HubSpot computes it)", name)
	case name == PropEmail || name == PropFirstName || name == PropLastName:
		return fmt.Errorf("%s is written from the user's email, firstName and lastName; map to another property", name)
	case c.idProperty != "" && name == c.idProperty:
		return fmt.Errorf("%s is this provider's spec.hubspot.idProperty, written from the user's identity; map to another property", name)
	case name != strings.ToLower(name):
		return fmt.Errorf("%s is not a HubSpot property's internal name: those are lowercase (such as hs_job_title)", name)
	}
	return nil
}
