package declared

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

func attrs(kv ...any) map[string]usersv1.AttributeValue {
	out := map[string]usersv1.AttributeValue{}
	for i := 0; i < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case string:
			out[kv[i].(string)] = usersv1.StringValue(v)
		case float64:
			out[kv[i].(string)] = usersv1.NumberValue(v)
		case bool:
			out[kv[i].(string)] = usersv1.BoolValue(v)
		}
	}
	return out
}

var ada = usersv1.User{Key: "ada", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace",
	Attributes: attrs("title", "Engineer", "plan", "pro", "seats", 3.0)}

func TestMap(t *testing.T) {
	for name, tc := range map[string]struct {
		entries    []usersv1.AttributeMapping
		unmapped   usersv1.UnmappedAttributes
		user       usersv1.User
		defaults   *usersv1.UserDefaults
		want       map[string]any
		createOnly map[string]any
		err        string
	}{
		"no mapping: written as declared": {
			user: ada, want: map[string]any{"title": "Engineer", "plan": "pro", "seats": 3.0},
		},
		"direct: renamed, the declared name is not written": {
			entries: []usersv1.AttributeMapping{{Attribute: "title", To: "hs_job_title"}},
			user:    ada, want: map[string]any{"hs_job_title": "Engineer", "plan": "pro", "seats": 3.0},
		},
		"direct without to keeps the name": {
			entries:  []usersv1.AttributeMapping{{Attribute: "title"}},
			unmapped: usersv1.UnmappedDrop,
			user:     ada, want: map[string]any{"title": "Engineer"},
		},
		"unmapped Drop writes only what entries name": {
			entries:  []usersv1.AttributeMapping{{Attribute: "title", To: "jobtitle"}},
			unmapped: usersv1.UnmappedDrop,
			user:     ada, want: map[string]any{"jobtitle": "Engineer"},
		},
		"unmapped Drop without entries writes no attributes": {
			unmapped: usersv1.UnmappedDrop, user: ada, want: nil,
		},
		"expression over the names": {
			entries: []usersv1.AttributeMapping{{Expression: "user.firstName + ' ' + user.lastName", To: "fullName"}},
			user:    ada, want: map[string]any{"fullName": "Ada Lovelace", "title": "Engineer", "plan": "pro", "seats": 3.0},
		},
		"expression over attributes, conditional": {
			entries: []usersv1.AttributeMapping{{Expression: "user.attributes.plan == 'pro' ? 'Enterprise' : 'Standard'", To: "tier"},
				{Attribute: "plan", Ignore: true}},
			user: ada, want: map[string]any{"tier": "Enterprise", "title": "Engineer", "seats": 3.0},
		},
		"expression returning a number is written as a number": {
			entries:  []usersv1.AttributeMapping{{Expression: "user.attributes.seats * 2.0", To: "seats2"}, {Expression: "size(user.key)", To: "keylen"}},
			unmapped: usersv1.UnmappedDrop,
			user:     ada, want: map[string]any{"seats2": 6.0, "keylen": 3.0},
		},
		"expression returning a bool": {
			entries:  []usersv1.AttributeMapping{{Expression: "user.attributes.seats > 2", To: "big"}},
			unmapped: usersv1.UnmappedDrop,
			user:     ada, want: map[string]any{"big": true},
		},
		"null writes nothing": {
			entries:  []usersv1.AttributeMapping{{Expression: "has(user.attributes.team) ? user.attributes.team : null", To: "team"}},
			unmapped: usersv1.UnmappedDrop,
			user:     ada, want: nil,
		},
		"createOnly values are apart": {
			entries: []usersv1.AttributeMapping{{Attribute: "plan", To: "initial_plan", CreateOnly: true},
				{Expression: "'welcome'", To: "note", CreateOnly: true}},
			user: ada, want: map[string]any{"title": "Engineer", "seats": 3.0},
			createOnly: map[string]any{"initial_plan": "pro", "note": "welcome"},
		},
		"ignore drops a declared attribute": {
			entries: []usersv1.AttributeMapping{{Attribute: "seats", Ignore: true}},
			user:    ada, want: map[string]any{"title": "Engineer", "plan": "pro"},
		},
		"ignore by vendor name drops an unmapped attribute of that name": {
			entries: []usersv1.AttributeMapping{{To: "plan", Ignore: true}},
			user:    ada, want: map[string]any{"title": "Engineer", "seats": 3.0},
		},
		"defaults fill what the user does not set": {
			user:     usersv1.User{Key: "bob", Attributes: attrs("plan", "free")},
			defaults: &usersv1.UserDefaults{Attributes: attrs("plan", "pro", "region", "eu")},
			want:     map[string]any{"plan": "free", "region": "eu"},
		},
		"defaults are mapped like declared attributes": {
			entries:  []usersv1.AttributeMapping{{Attribute: "region", To: "hs_region"}},
			user:     usersv1.User{Key: "bob"},
			defaults: &usersv1.UserDefaults{Attributes: attrs("region", "eu")},
			want:     map[string]any{"hs_region": "eu"},
		},
		"defaults are seen by expressions": {
			entries:  []usersv1.AttributeMapping{{Expression: "user.attributes.region.upperAscii()", To: "r"}},
			unmapped: usersv1.UnmappedDrop,
			user:     usersv1.User{Key: "bob"},
			defaults: &usersv1.UserDefaults{Attributes: attrs("region", "eu")},
			want:     map[string]any{"r": "EU"},
		},
		"a missing attribute fails the user, naming the entry": {
			entries: []usersv1.AttributeMapping{{Attribute: "title"}, {Expression: "user.attributes.team + '!'", To: "team"}},
			user:    ada, err: "attributeMapping[1] (to team): expression failed: no such key: team",
		},
		"a list at run time fails the user": {
			entries: []usersv1.AttributeMapping{{Expression: "user.attributes.seats > 1 ? user.key : user.attributes", To: "x"}},
			user:    usersv1.User{Key: "k", Attributes: attrs("seats", 0.0)}, err: "attributeMapping[0] (to x): expression returned a map",
		},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := Compile(&usersv1.ProviderSpec{AttributeMapping: tc.entries, UnmappedAttributes: tc.unmapped}, nil)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			res, err := m.Map(&tc.user, tc.defaults)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Map error = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if !reflect.DeepEqual(res.User.Attributes, tc.want) {
				t.Errorf("attributes = %#v, want %#v", res.User.Attributes, tc.want)
			}
			if !reflect.DeepEqual(res.CreateOnly, tc.createOnly) {
				t.Errorf("createOnly = %#v, want %#v", res.CreateOnly, tc.createOnly)
			}
			if res.User.Key != tc.user.Key || res.User.Email != tc.user.Email || res.User.FirstName != tc.user.FirstName {
				t.Errorf("user fields changed: %+v", res.User)
			}
		})
	}
}

// refuse is a vendor that allows neither read-only nor typed-wrong targets.
type refuse struct{}

func (refuse) CheckTarget(name string, kind providers.ValueKind) error {
	switch {
	case name == "hs_object_id":
		return fmt.Errorf("%s is read-only", name)
	case name == "gender" && kind != providers.KindString && kind != providers.KindAny:
		return fmt.Errorf("%s takes text, the expression returns a %s", name, kind)
	}
	return nil
}

func TestCompileRefuses(t *testing.T) {
	long := "user.attributes.all(k, user.attributes.all(j, user.attributes.all(i, user.email.matches(k + j + i))))"
	for name, tc := range map[string]struct {
		entries []usersv1.AttributeMapping
		err     string
	}{
		"syntax": {[]usersv1.AttributeMapping{{Expression: "user.firstName +", To: "x"}},
			"attributeMapping[0] (to x): expression does not compile: ERROR: <input>:1:17: Syntax error"},
		"unknown variable": {[]usersv1.AttributeMapping{{Expression: "person.name", To: "x"}},
			"attributeMapping[0] (to x): expression does not compile: ERROR: <input>:1:1: undeclared reference to 'person'"},
		"list result": {[]usersv1.AttributeMapping{{Expression: "[user.key]", To: "x"}},
			"attributeMapping[0] (to x): expression returns list(dyn); it must return a string, a number, a boolean or null"},
		"map result": {[]usersv1.AttributeMapping{{Expression: "{'a': user.key}", To: "x"}},
			"it must return a string, a number, a boolean or null"},
		"too costly": {[]usersv1.AttributeMapping{{Expression: long, To: "x"}},
			"attributeMapping[0] (to x): expression may cost"},
		"two entries write one name": {[]usersv1.AttributeMapping{{Attribute: "title", To: "jobtitle"}, {Attribute: "role", To: "seats"}, {Expression: "'x'", To: "jobtitle"}},
			"attributeMapping[0] and attributeMapping[2] both write jobtitle"},
		"an entry writes an ignored name": {[]usersv1.AttributeMapping{{To: "jobtitle", Ignore: true}, {Attribute: "title", To: "jobtitle"}},
			"attributeMapping[1] writes jobtitle, which an ignore entry never writes"},
		"a read-only target": {[]usersv1.AttributeMapping{{Attribute: "id", To: "hs_object_id"}},
			"attributeMapping[0] (to hs_object_id): hs_object_id is read-only"},
		"a fixed field of another type": {[]usersv1.AttributeMapping{{Expression: "user.key == 'a'", To: "gender"}},
			"attributeMapping[0] (to gender): gender takes text, the expression returns a bool"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Compile(&usersv1.ProviderSpec{AttributeMapping: tc.entries}, refuse{})
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Compile error = %v, want it to contain %q", err, tc.err)
			}
		})
	}
}

func TestCompileAcceptsTypedText(t *testing.T) {
	if _, err := Compile(&usersv1.ProviderSpec{AttributeMapping: []usersv1.AttributeMapping{{Expression: "user.key", To: "gender"}}}, refuse{}); err != nil {
		t.Fatal(err)
	}
}

// TestHashCoversTheMappedResult: a mapping change changes the hash of
// exactly the users whose written values change, and no mapping hashes as
// before mappings existed (an upgrade rewrites nothing).
func TestHashCoversTheMappedResult(t *testing.T) {
	us := &usersv1.UserSync{Spec: usersv1.UserSyncSpec{Users: []usersv1.User{
		{Key: "a", Attributes: attrs("plan", "pro")},
		{Key: "b", Attributes: attrs("plan", "free")},
		{Key: "c"},
	}}}
	before := Hashes(us, nil)
	legacy := planner.Hash(providers.User{Key: "a", Attributes: map[string]any{"plan": "pro"}})
	if before["a"] != legacy {
		t.Fatalf("no mapping must hash as the user as declared")
	}
	m, err := Compile(&usersv1.ProviderSpec{AttributeMapping: []usersv1.AttributeMapping{
		{Expression: "has(user.attributes.plan) && user.attributes.plan == 'pro' ? dyn('Enterprise') : null", To: "plan"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	after := Hashes(us, m)
	// a: plan pro → Enterprise (changed); b: plan free → not written
	// (changed); c: nothing before, nothing after (same).
	if after["a"] == before["a"] || after["b"] == before["b"] || after["c"] != before["c"] {
		t.Fatalf("hash changes: a %v, b %v, c %v; want a and b only",
			after["a"] != before["a"], after["b"] != before["b"], after["c"] != before["c"])
	}
}

func TestWrittenAddsCreateOnlyToCreates(t *testing.T) {
	us := &usersv1.UserSync{Spec: usersv1.UserSyncSpec{Users: []usersv1.User{ada}}}
	m, err := Compile(&usersv1.ProviderSpec{UnmappedAttributes: usersv1.UnmappedDrop, AttributeMapping: []usersv1.AttributeMapping{
		{Attribute: "title"}, {Attribute: "plan", CreateOnly: true}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := Written(us, 0, m, providers.OpCreate).Attributes; !reflect.DeepEqual(got, map[string]any{"title": "Engineer", "plan": "pro"}) {
		t.Errorf("create writes %v", got)
	}
	if got := Written(us, 0, m, providers.OpUpdate).Attributes; !reflect.DeepEqual(got, map[string]any{"title": "Engineer"}) {
		t.Errorf("update writes %v", got)
	}
}

func TestUsersFailsOnlyTheUserAnExpressionFailsFor(t *testing.T) {
	us := &usersv1.UserSync{Spec: usersv1.UserSyncSpec{Users: []usersv1.User{
		{Key: "a", Attributes: attrs("team", "x")}, {Key: "b"}, {Key: "c", Attributes: attrs("bad name!", "x")}}}}
	m, err := Compile(&usersv1.ProviderSpec{AttributeMapping: []usersv1.AttributeMapping{{Expression: "user.attributes.team", To: "team"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := Users(us, m, nil, false)
	if got[0].Invalid != "" || !strings.Contains(got[1].Invalid, "no such key: team") || !strings.Contains(got[2].Invalid, "no such key") {
		t.Fatalf("invalid = %q, %q, %q", got[0].Invalid, got[1].Invalid, got[2].Invalid)
	}
	if got[0].User.Attributes != nil {
		t.Errorf("attributes kept: %v", got[0].User.Attributes)
	}
	// Without the expression, c fails for its attribute name.
	if got := Users(us, nil, nil, true); !strings.Contains(got[2].Invalid, `attribute name "bad name!" is invalid`) || got[0].User.Attributes["team"] != "x" {
		t.Fatalf("invalid = %q, attributes %v", got[2].Invalid, got[0].User.Attributes)
	}
}

func BenchmarkMap(b *testing.B) {
	m, err := Compile(&usersv1.ProviderSpec{AttributeMapping: []usersv1.AttributeMapping{
		{Attribute: "title", To: "hs_job_title"},
		{Expression: "user.firstName + ' ' + user.lastName", To: "fullname"},
		{Expression: "user.attributes.plan == 'pro' ? 'Enterprise' : 'Standard'", To: "tier"},
	}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.Map(&ada, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// The Go computation of a concatenation gives CEL's own value, and leaves
// to CEL what it cannot do (a number, a missing attribute).
func TestConcatIsCELs(t *testing.T) {
	users := []usersv1.User{ada, {Key: "k", Attributes: attrs("domain", "example.com", "n", 2.0)}, {Key: "ü", FirstName: "Zoë"}}
	for _, expr := range []string{
		"user.firstName + ' ' + user.lastName",
		"user.key + '@' + user.attributes.domain",
		"'x' + user.attributes.n",
		"user.attributes.missing + 'x'",
		"user.email + user.key + user.firstName",
	} {
		spec := &usersv1.ProviderSpec{UnmappedAttributes: usersv1.UnmappedDrop, AttributeMapping: []usersv1.AttributeMapping{{Expression: expr, To: "x"}}}
		fast, err := Compile(spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fast.entries[0].concat == nil {
			t.Fatalf("%s: not computed in Go", expr)
		}
		slow, _ := Compile(spec, nil)
		slow.entries[0].concat, slow.entries[0].memo = nil, nil
		for _, u := range users {
			a, errA := fast.Map(&u, nil)
			b, errB := slow.Map(&u, nil)
			if fmt.Sprint(errA) != fmt.Sprint(errB) || !reflect.DeepEqual(a, b) {
				t.Errorf("%s for %s: Go %v %v, CEL %v %v", expr, u.Key, a.User.Attributes, errA, b.User.Attributes, errB)
			}
		}
	}
	if m, _ := Compile(&usersv1.ProviderSpec{AttributeMapping: []usersv1.AttributeMapping{{Expression: "user.firstName.upperAscii() + 'x'", To: "x"}}}, nil); m.entries[0].concat != nil {
		t.Error("a function call is not a concatenation")
	}
}
