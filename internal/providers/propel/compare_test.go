package propel

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/usersync/usersync-operator/internal/providers"
)

// declared is a user with a value of every type, and attributes written to
// Propel fields.
var declared = providers.User{
	Key: "alice", Email: "Alice@Example.com", FirstName: "Alice", LastName: "Liddell",
	Attributes: map[string]any{
		"department": "sales", "seats": float64(3), "ratio": 0.25, "admin": true, "trial": false,
		"renewal": "2024-05-01", "note": "", "gone": nil,
		"phone": "+31 20 555 0100", "debtorId": float64(42), "dateOfBirth": "1990-01-01",
	},
}

// asStored is declared as Propel might answer it: the email lower-cased,
// numbers as JSON numbers, the empty attribute dropped, fields Propel adds.
const asStored = `{"data": {"id": 1001, "source": "usersync-operator", "sourceId": "alice", "email": "alice@example.com",
	"firstName": "Alice", "lastName": "Liddell", "phone": "+31 20 555 0100", "debtorId": 42,
	"dateOfBirth": "1990-01-01T00:00:00Z", "company": "Acme", "attributes": [
		{"name": "department", "value": "sales", "type": "text"}, {"name": "seats", "value": 3, "type": "integer"},
		{"name": "ratio", "value": "0.25", "type": "decimal"}, {"name": "admin", "value": "TRUE", "type": "text"},
		{"name": "trial", "value": false}, {"name": "renewal", "value": "2024-05-01"},
		{"name": "other", "value": "x"}]}, "messages": ["Completed"]}`

func TestDiffers(t *testing.T) {
	c := &Client{source: DefaultSource}
	cases := map[string]struct {
		user  providers.User
		body  string
		edit  map[string]any // top-level fields; nil removes
		attrs map[string]any // attributes; nil removes
		want  []string
	}{
		"unchanged":                    {},
		"email changed":                {edit: map[string]any{"email": "bob@example.com"}, want: []string{"email"}},
		"email case only":              {edit: map[string]any{"email": "ALICE@example.COM"}},
		"first name changed":           {edit: map[string]any{"firstName": "Al"}, want: []string{"firstName"}},
		"last name removed":            {edit: map[string]any{"lastName": nil}, want: []string{"lastName"}},
		"field attribute changed":      {edit: map[string]any{"phone": "+1"}, want: []string{"phone"}},
		"number field as a string":     {edit: map[string]any{"debtorId": "42.0"}},
		"date field changed":           {edit: map[string]any{"dateOfBirth": "1990-01-02"}, want: []string{"dateOfBirth"}},
		"vendor-added field changed":   {edit: map[string]any{"company": "Other", "middleName": "X"}},
		"attribute changed":            {attrs: map[string]any{"department": "support"}, want: []string{"department"}},
		"number as a string":           {attrs: map[string]any{"seats": "3"}},
		"number as a float":            {attrs: map[string]any{"seats": 3.0, "ratio": 0.25}},
		"number changed":               {attrs: map[string]any{"seats": "4"}, want: []string{"seats"}},
		"bool as a bool":               {attrs: map[string]any{"admin": true}},
		"bool changed":                 {attrs: map[string]any{"admin": "false"}, want: []string{"admin"}},
		"attribute removed":            {attrs: map[string]any{"department": nil, "trial": nil}, want: []string{"department", "trial"}},
		"empty attribute stored":       {attrs: map[string]any{"note": ""}},
		"undeclared attribute changed": {attrs: map[string]any{"other": "y"}},
		"list for a scalar":            {attrs: map[string]any{"department": []any{"sales"}}, want: []string{"department"}},
		"several": {edit: map[string]any{"firstName": "Al", "phone": nil}, attrs: map[string]any{"seats": 9},
			want: []string{"firstName", "phone", "seats"}},
		"attributes as an object": {body: `{"data":{"sourceId":"alice","email":"alice@example.com","firstName":"Alice",
			"lastName":"Liddell","phone":"+31 20 555 0100","debtorId":"42","dateOfBirth":"1990-01-01","attributes":{"department":"sales",
			"seats":3,"ratio":0.25,"admin":true,"trial":"false","renewal":"2024-05-01"}}}`},
		"no envelope": {body: `{"sourceId":"alice","email":"alice@example.com","firstName":"Alice","lastName":"Liddell",
			"phone":"+31 20 555 0100","debtorId":42,"dateOfBirth":"1990-01-01","attributes":[{"name":"department","value":"sales"},
			{"name":"seats","value":"3"},{"name":"ratio","value":"0.25"},{"name":"admin","value":"true"},
			{"name":"trial","value":"false"},{"name":"renewal","value":"2024-05-01"}]}`},
		"no attributes in the answer": {body: `{"data":[{"sourceId":"alice","email":"alice@example.com","firstName":"Alice",
			"lastName":"Liddell","phone":"+31 20 555 0100","debtorId":42,"dateOfBirth":"1990-01-01"}]}`,
			want: []string{"admin", "department", "ratio", "renewal", "seats", "trial"}},
		"empty names are not written": {user: providers.User{Key: "alice", Email: "alice@example.com"},
			edit: map[string]any{"firstName": "Someone"}},
		"attribute named like a field": {user: providers.User{Key: "alice", Attributes: map[string]any{"email": "x"}},
			attrs: map[string]any{"email": "y"}, want: []string{"email"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			body := tc.body
			if body == "" {
				body = edited(t, asStored, tc.edit, tc.attrs)
			}
			got, err := decodeStored([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			u := tc.user
			if u.Key == "" {
				u = declared
			}
			if diff := cmp.Diff(tc.want, differs(c.wireUser(u), got)); diff != "" {
				t.Errorf("differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSameStored(t *testing.T) {
	cases := []struct {
		want, got any
		same      bool
	}{
		{"a", "a", true}, {"a", " a ", true}, {"a", "A", false}, {"", nil, true}, {"x", nil, false},
		{"3", json.Number("3"), true}, {"3", 3.0, true}, {"3", "3.00", true}, {"3", "3a", false}, {"3.5", "3.25", false},
		{"true", "TRUE", true}, {"false", false, true}, {"true", "1", false}, {"false", nil, false},
		{"1990-01-01", "1990-01-01T00:00:00Z", true}, {"1990-01-01", "1990-01-02", false}, {"a", map[string]any{}, false},
	}
	for _, tc := range cases {
		if got := sameStored(tc.want, tc.got); got != tc.same {
			t.Errorf("sameStored(%#v, %#v) = %v", tc.want, tc.got, got)
		}
	}
	if !sameEmail("A@B.example", "a@b.example") || sameEmail("a@b.example", nil) {
		t.Error("sameEmail")
	}
}

func TestDecodeStoredRefuses(t *testing.T) {
	for _, body := range []string{`[]`, `{"data":null}`, `{"data":[]}`, `{"data":[{},{}]}`, `{"data":"x"}`,
		`{"data":{"attributes":"x"}}`, `{"data":{"attributes":["x"]}}`, `<html>`} {
		if _, err := decodeStored([]byte(body)); err == nil {
			t.Errorf("%s: no error", body)
		}
	}
}

// edited returns the answer body with the user's top-level fields of edit
// and the attributes of attrs set; nil removes.
func edited(t *testing.T, body string, edit, attrs map[string]any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	u := m["data"].(map[string]any)
	for k, v := range edit {
		if v == nil {
			delete(u, k)
		} else {
			u[k] = v
		}
	}
	list := u["attributes"].([]any)
	for name, v := range attrs {
		i := 0
		for i < len(list) && list[i].(map[string]any)["name"] != name {
			i++
		}
		switch {
		case v == nil && i < len(list):
			list = append(list[:i], list[i+1:]...)
		case v == nil:
		case i < len(list):
			list[i].(map[string]any)["value"] = v
		default:
			list = append(list, map[string]any{"name": name, "value": v})
		}
	}
	u["attributes"] = list
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
