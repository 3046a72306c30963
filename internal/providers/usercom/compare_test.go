package usercom

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/usersync/usersync-operator/internal/providers"
)

// declared is a user with a value of every type.
var declared = providers.User{
	Key: "alice", Email: "Alice@Example.com", FirstName: "Alice", LastName: "Liddell",
	Attributes: map[string]any{
		"plan": "pro", "seat": float64(3), "ratio": 0.25, "active": true, "trial": false,
		"renewal": "2024-05-01", "last_seen": "2024-05-01T10:00:00Z", "phone_number": "+31 20 555 0100",
		"note": "", "gone": nil,
	},
}

// asStored is declared as user.com answers it: the email lower-cased,
// numbers as JSON numbers, an empty value dropped, fields user.com adds.
const asStored = `{"id": 5001, "custom_id": "alice", "key": "abc", "email": "alice@example.com",
	"first_name": "Alice", "last_name": "Liddell", "phone_number": "+31 20 555 0100", "score": 12,
	"attributes": {"plan": "pro", "seat": 3, "ratio": 0.25, "active": true, "trial": false,
		"renewal": "2024-05-01", "last_seen": "2024-05-01T10:00:00+00:00", "other": "x"}}`

func TestDiffers(t *testing.T) {
	cases := map[string]struct {
		user providers.User
		// body is the stored user; edit changes asStored's attributes
		// (nil removes) and top-level fields.
		body  string
		edit  map[string]any
		attrs map[string]any
		want  []string
	}{
		"unchanged":                      {},
		"email changed":                  {edit: map[string]any{"email": "bob@example.com"}, want: []string{"email"}},
		"email case only":                {edit: map[string]any{"email": "ALICE@EXAMPLE.COM"}},
		"first name changed":             {edit: map[string]any{"first_name": "Al"}, want: []string{"first_name"}},
		"last name removed":              {edit: map[string]any{"last_name": nil}, want: []string{"last_name"}},
		"standard field changed":         {edit: map[string]any{"phone_number": "+1"}, want: []string{"phone_number"}},
		"vendor-added field changed":     {edit: map[string]any{"score": 99}},
		"string attribute changed":       {attrs: map[string]any{"plan": "free"}, want: []string{"plan"}},
		"number as a string":             {attrs: map[string]any{"seat": "3"}},
		"number as a float":              {attrs: map[string]any{"seat": 3.0, "ratio": "0.250"}},
		"number changed":                 {attrs: map[string]any{"seat": 4}, want: []string{"seat"}},
		"bool as a string":               {attrs: map[string]any{"active": "true", "trial": "False"}},
		"bool changed":                   {attrs: map[string]any{"active": false}, want: []string{"active"}},
		"datetime in UTC":                {attrs: map[string]any{"last_seen": "2024-05-01T12:00:00+02:00"}},
		"datetime changed":               {attrs: map[string]any{"last_seen": "2024-05-02T10:00:00Z"}, want: []string{"last_seen"}},
		"date as a datetime":             {attrs: map[string]any{"renewal": "2024-05-01T00:00:00Z"}},
		"attribute removed":              {attrs: map[string]any{"plan": nil, "trial": nil}, want: []string{"plan", "trial"}},
		"empty attribute stored as null": {attrs: map[string]any{"note": nil}},
		"undeclared attribute changed":   {attrs: map[string]any{"other": "y"}},
		"object for a scalar":            {attrs: map[string]any{"plan": map[string]any{"v": "pro"}}, want: []string{"plan"}},
		"several":                        {edit: map[string]any{"first_name": "Al"}, attrs: map[string]any{"seat": 9, "active": nil}, want: []string{"active", "first_name", "seat"}},
		"attributes as a list": {body: `{"custom_id":"alice","email":"alice@example.com","first_name":"Alice","last_name":"Liddell",
			"phone_number":"+31 20 555 0100","attributes":[{"name_std":"plan","name":"Plan","value":"pro"},{"name":"seat","value":"3"},
			{"name":"ratio","value":0.25},{"name":"active","value":true},{"name":"trial","value":false},
			{"name":"renewal","value":"2024-05-01"},{"name":"last_seen","value":"2024-05-01T10:00:00Z"}]}`},
		"attributes at the top level": {body: `{"custom_id":"alice","email":"alice@example.com","first_name":"Alice",
			"last_name":"Liddell","phone_number":"+31 20 555 0100","plan":"pro","seat":3,"ratio":0.25,"active":true,
			"trial":false,"renewal":"2024-05-01","last_seen":"2024-05-01T10:00:00Z"}`},
		"no email declared": {user: providers.User{Key: "alice", FirstName: "Alice", LastName: "Liddell"},
			edit: map[string]any{"email": "someone@example.com"}},
		"no names declared, names set": {user: providers.User{Key: "alice", Email: "alice@example.com"},
			want: []string{"first_name", "last_name"}},
		"reserved attribute ignored": {user: providers.User{Key: "alice", Email: "alice@example.com", FirstName: "Alice",
			LastName: "Liddell", Attributes: map[string]any{"id": "x", "plan": "pro"}}},
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
			if diff := cmp.Diff(tc.want, differs(u, got)); diff != "" {
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
		{int64(3), "3", true}, {int64(3), 3.0, true}, {"3", "3.00", true}, {int64(3), "3a", false}, {3.5, "3.25", false},
		{true, "TRUE", true}, {false, "false", true}, {true, "1", false}, {false, nil, false}, {"true", true, true},
		{"2024-05-01", "2024-05-01T00:00:00Z", true}, {"2024-05-01T10:00:00Z", "2024-05-01 10:00:00", true},
		{"2024-05-01", "2024-05-02", false}, {"a", []any{"a"}, false},
	}
	for _, tc := range cases {
		if got := sameStored(tc.want, tc.got); got != tc.same {
			t.Errorf("sameStored(%#v, %#v) = %v", tc.want, tc.got, got)
		}
	}
	if !sameEmail("A@B.example", "a@b.example") || sameEmail("a@b.example", "b@b.example") {
		t.Error("sameEmail")
	}
}

// edited returns the JSON object body with the top-level keys of edit and
// the "attributes" keys of attrs set; nil removes.
func edited(t *testing.T, body string, edit, attrs map[string]any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	set := func(dst, src map[string]any) {
		for k, v := range src {
			if v == nil {
				delete(dst, k)
			} else {
				dst[k] = v
			}
		}
	}
	set(m, edit)
	set(m["attributes"].(map[string]any), attrs)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
