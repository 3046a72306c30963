// Package declared converts what a UserSync declares into what the planner
// and the vendors see: its users mapped by a provider's attributeMapping
// (mapping.go), hashed and checked, and its stored records. The operator and
// the kubectl plugin both use it, so that the plugin's plan is the
// operator's.
package declared

import (
	"fmt"
	"regexp"
	"sort"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

// Users converts the spec's users for one provider: mapped, hashed, checked
// (Invalid says why a record must fail) and, when the vendor client is
// known, given their vendor identities. With keepAttributes false the users
// are kept without their attributes (the hash covers them): the engine gets
// them again when it sends (see Mapping.Map), so that at 100,000 users the
// attribute maps never all sit in memory.
func Users(us *usersv1.UserSync, m *Mapping, vendor providers.Client, keepAttributes bool) []planner.Desired {
	out := make([]planner.Desired, len(us.Spec.Users))
	for i := range us.Spec.Users {
		u := &us.Spec.Users[i]
		d := &out[i]
		res, err := m.mapUser(u, us.Spec.Defaults, false)
		switch {
		case err != nil:
			res.User = providers.User{Key: u.Key, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName}
			d.Invalid = err.Error()
		default:
			d.Invalid = InvalidAttributes(u, us.Spec.Defaults)
		}
		d.Hash = planner.Hash(res.User)
		if vendor != nil {
			d.Identity = vendor.Identity(res.User)
		}
		if !keepAttributes {
			res.User.Attributes = nil
		}
		d.User = res.User
	}
	return out
}

// Hashes returns the hash of every declared user for one provider, by key.
func Hashes(us *usersv1.UserSync, m *Mapping) map[string]string {
	out := make(map[string]string, len(us.Spec.Users))
	for i := range us.Spec.Users {
		u := &us.Spec.Users[i]
		res, err := m.mapUser(u, us.Spec.Defaults, false)
		if err != nil {
			res.User = providers.User{Key: u.Key, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName}
		}
		out[u.Key] = planner.Hash(res.User)
	}
	return out
}

// Written is a user as it is written for a change: mapped, with its
// createOnly values when the change creates it. A user the mapping fails
// for is written without attributes (its record fails before it is sent).
func Written(us *usersv1.UserSync, i int, m *Mapping, op providers.Op) providers.User {
	res, err := m.mapUser(&us.Spec.Users[i], us.Spec.Defaults, op == providers.OpCreate)
	if err != nil {
		u := &us.Spec.Users[i]
		return providers.User{Key: u.Key, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName}
	}
	if op == providers.OpCreate && len(res.CreateOnly) > 0 {
		attrs := make(map[string]any, len(res.User.Attributes)+len(res.CreateOnly))
		for k, v := range res.User.Attributes {
			attrs[k] = v
		}
		for k, v := range res.CreateOnly {
			attrs[k] = v
		}
		res.User.Attributes = attrs
	}
	return res.User
}

// attributeName is the rule for attribute names that the CRD cannot
// enforce (no CEL rule can cover a map of untyped values).
var attributeName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,39}$`)

// InvalidAttributes says what is wrong with a user's attributes or the
// UserSync's default attributes, or "".
func InvalidAttributes(u *usersv1.User, defaults *usersv1.UserDefaults) string {
	if msg := invalidAttributes(u.Attributes); msg != "" {
		return msg
	}
	if defaults != nil {
		if msg := invalidAttributes(defaults.Attributes); msg != "" {
			return "defaults: " + msg
		}
	}
	return ""
}

func invalidAttributes(attrs map[string]usersv1.AttributeValue) string {
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !attributeName.MatchString(k) {
			return fmt.Sprintf("attribute name %q is invalid: it must start with a letter or _, hold only letters, digits, _ . - and be at most 40 characters", k)
		}
		if _, err := usersv1.ScalarOf(attrs[k]); err != nil {
			return fmt.Sprintf("attribute %q must be a string, a number or a boolean", k)
		}
	}
	return ""
}

// RecordOf is a stored result as the planner's record: the one mapping
// from the API's RecordResult (the controller's storedResult is its
// inverse).
func RecordOf(r *usersv1.RecordResult) planner.Record {
	rec := planner.Record{Key: r.Key, ExternalID: r.ExternalID, State: string(r.State), Action: r.Action,
		Reason: r.Reason, Message: r.Message, Attempts: r.Attempts, Hash: r.Hash}
	if r.LastSyncTime != nil {
		rec.LastAttempt = r.LastSyncTime.Time
	}
	return rec
}

// RecordsOf returns one provider's records of a UserSync's status, by key.
func RecordsOf(us *usersv1.UserSync, ref string) map[string]planner.Record {
	out := map[string]planner.Record{}
	for i := range us.Status.Results {
		if r := &us.Status.Results[i]; r.Provider == ref {
			out[r.Key] = RecordOf(r)
		}
	}
	return out
}
