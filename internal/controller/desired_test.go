package controller

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/declared"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

// keyOnly is a vendor whose identity is the user's key.
type keyOnly struct{ fakeClient }

func (keyOnly) Identity(u providers.User) string { return "key:" + u.Key }

// The desired cache keeps the mapped hashes of a generation while the
// client is rebuilt for another field of the provider (identities only
// are computed again), and computes everything again for another mapping.
func TestDesiredCacheKeepsHashesAcrossClients(t *testing.T) {
	us := &usersv1.UserSync{Spec: usersv1.UserSyncSpec{Users: []usersv1.User{
		{Key: "a", Email: "A@x.io", Attributes: map[string]usersv1.AttributeValue{"title": usersv1.StringValue("Eng")}}}}}
	us.UID, us.Generation = types.UID("u1"), 3
	compile := func(to string) *declared.Mapping {
		m, err := declared.Compile(&usersv1.ProviderSpec{AttributeMapping: []usersv1.AttributeMapping{{Attribute: "title", To: to}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m1, v1 := compile("jobtitle"), &fakeClient{}
	var c desiredCache
	first := c.users("p", us, v1, m1)
	c.keep("p", map[types.UID]desiredEntry{us.UID: {generation: us.Generation, vendor: v1, mapping: m1, users: first}}, m1)

	// The same mapping compiled again with a new client: the cached hash
	// (marked, to see it is not recomputed), a new identity.
	first[0].Hash = "cached"
	again := c.users("p", us, &keyOnly{}, compile("jobtitle"))
	if again[0].Hash != "cached" || again[0].Identity != "key:a" {
		t.Fatalf("another client, same mapping: %+v", again[0])
	}
	if first[0].Identity != "a@x.io" {
		t.Fatalf("the cached entry was changed: %+v", first[0])
	}
	// Another mapping: everything again.
	other := c.users("p", us, v1, compile("title_text"))
	if other[0].Hash == "cached" || other[0].Hash == "" {
		t.Fatalf("another mapping kept the hash: %+v", other[0])
	}
	if want := planner.Hash(providers.User{Key: "a", Email: "A@x.io", Attributes: map[string]any{"title_text": "Eng"}}); other[0].Hash != want {
		t.Fatalf("hash %s, want %s", other[0].Hash, want)
	}
}
