package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

func makeUsers(prefix string, n int) []usersv1.User {
	out := make([]usersv1.User, n)
	for i := range out {
		k := fmt.Sprintf("%s%03d", prefix, i)
		out[i] = usersv1.User{Key: k, Email: k + "@example.com", FirstName: "F" + k, LastName: "L",
			Attributes: map[string]usersv1.AttributeValue{"team": usersv1.StringValue(prefix)}}
	}
	return out
}

func syncObject(ns, name string, users []usersv1.User, policy usersv1.DeletionPolicy) *usersv1.UserSync {
	return &usersv1.UserSync{
		TypeMeta:   metav1.TypeMeta{APIVersion: usersv1.GroupVersion.String(), Kind: "UserSync"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hs"}},
			DeletionPolicy: policy, Users: users}}
}

func getSync(t *testing.T, ns, name string) *usersv1.UserSync {
	t.Helper()
	us := &usersv1.UserSync{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, us); err != nil {
		t.Fatal(err)
	}
	return us
}

// TestPlanIsWhatTheOperatorDoes plans a manifest with the plugin, applies
// it, lets the operator converge, and checks that the vendor received
// exactly the planned writes, in exactly the planned calls: creates,
// updates (a field changed), deletions (deletionPolicy Delete) of a
// converged UserSync, and a second, new UserSync of the same provider,
// whose changes the operator packs into the same batches.
func TestPlanIsWhatTheOperatorDoes(t *testing.T) {
	ns := newNamespace(t)
	// HubSpot with an idProperty: creates and updates are one upsert
	// endpoint, 100 inputs a call; deletions are archive calls.
	em := hubspotProvider(t, ns, hsemu.Options{UniqueProperties: []string{"k8s_key"}}, func(s *usersv1.ProviderSpec) {
		s.HubSpot = &usersv1.HubSpotOptions{IDProperty: "k8s_key"}
	})
	team := makeUsers("t", 10)
	if err := k8s.Create(ctx, syncObject(ns, "team", team, usersv1.DeletionPolicyDelete)); err != nil {
		t.Fatal(err)
	}
	op := startOperator(t, ns)
	waitSynced(t, ns, "team")
	// The operator stops while the manifest is planned and applied, so
	// that it sees the whole manifest in its next loop (see forecastLine).
	op.stop()
	before := getSync(t, ns, "team")
	time.Sleep(time.Second) // a record written again shows a later lastSyncTime
	em.ResetCounters()

	// team: t000-t002 change their first name, t003-t007 stay, t008 and
	// t009 leave (2 of 10: under the deletion guard's limits), 130 join;
	// team-b, new: 60 users.
	next := slices.Clone(team[:8])
	for i := range 3 {
		next[i].FirstName = "Changed"
	}
	next = append(next, makeUsers("n", 130)...)
	teamB := makeUsers("b", 60)
	manifest := manifestOf(t, syncObject(ns, "team", next, usersv1.DeletionPolicyDelete), syncObject(ns, "team-b", teamB, ""))

	out, results, changed := planOf(t, manifest, ns)
	if !changed || len(results) != 2 {
		t.Fatalf("changed %v, %d results:\n%s", changed, len(results), out)
	}
	planned := map[string]string{} // key → action
	var creates, updates, deletes int
	for _, r := range results {
		if r.Provider != "UserProvider/hs" {
			t.Fatalf("provider %s:\n%s", r.Provider, out)
		}
		for _, row := range r.Rows {
			planned[r.Sync+"/"+row.key] = row.action
		}
		creates, updates, deletes = creates+r.Creates, updates+r.Updates, deletes+r.Deletes
	}
	if creates != 190 || updates != 3 || deletes != 2 || len(planned) != 195 {
		t.Fatalf("planned %d creates, %d updates, %d deletes, %d rows:\n%s", creates, updates, deletes, len(planned), out)
	}
	// The two UserSyncs' 193 upserts share 2 calls (team alone takes 2 and
	// team-b 1), and 1 archive: 3 calls, the same for both.
	for _, want := range []string{
		"130 to create, 3 to update, 2 to delete: 3 vendor calls, shared with the changes of 1 other UserSync (" + ns + "/team-b), at least 0s at 1000 requests per 1s",
		"60 to create, 0 to update, 0 to delete: 3 vendor calls, shared with the changes of 1 other UserSync (" + ns + "/team), at least 0s at 1000 requests per 1s",
		`t001   update   firstName: "Ft001" → "Changed"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if results[0].Calls != results[1].Calls {
		t.Fatalf("the shared calls differ: %d and %d", results[0].Calls, results[1].Calls)
	}
	plannedCalls := results[0].Calls

	// Apply the manifest, then let the operator converge.
	us := getSync(t, ns, "team")
	us.Spec.Users = next
	if err := k8s.Update(ctx, us); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, syncObject(ns, "team-b", teamB, "")); err != nil {
		t.Fatal(err)
	}
	startOperator(t, ns)
	waitSynced(t, ns, "team", "team-b")

	// The vendor saw exactly the planned writes, in the planned calls.
	if got := hubspotWrites(em); got != plannedCalls {
		t.Errorf("the operator made %d write calls, the plan said %d (upsert inputs %v, archive inputs %v)",
			got, plannedCalls, em.Inputs(hsemu.EndpointUpsert), em.Inputs(hsemu.EndpointArchive))
	}
	sum := func(ns []int) int {
		n := 0
		for _, v := range ns {
			n += v
		}
		return n
	}
	if got := sum(em.Inputs(hsemu.EndpointUpsert)); got != creates+updates {
		t.Errorf("%d users upserted, %d planned", got, creates+updates)
	}
	if got := sum(em.Inputs(hsemu.EndpointArchive)); got != deletes {
		t.Errorf("%d users archived, %d planned", got, deletes)
	}
	atVendor := map[string]hsemu.User{}
	for _, u := range em.Users() {
		atVendor[u.Properties["k8s_key"]] = u
	}
	if len(atVendor) != 8+130+60 {
		t.Errorf("%d users at the vendor, want %d", len(atVendor), 8+130+60)
	}
	// Each record went as planned: created, updated, deleted, or not
	// touched.
	beforeRec := map[string]usersv1.RecordResult{}
	for _, r := range before.Status.Results {
		beforeRec[ns+"/team/"+r.Key] = r
	}
	done := map[string]string{}
	for _, name := range []string{"team", "team-b"} {
		for _, r := range getSync(t, ns, name).Status.Results {
			key := ns + "/" + name + "/" + r.Key
			switch {
			case r.State != usersv1.StateSynced:
				t.Errorf("%s: %s %s", key, r.State, r.Message)
			case r.Action == "Created" || r.Action == "Updated":
				if old, ok := beforeRec[key]; ok && r.LastSyncTime.Equal(old.LastSyncTime) {
					continue // not written again
				}
				done[key] = strings.ToLower(strings.TrimSuffix(r.Action, "d"))
			default:
				t.Errorf("%s: action %s", key, r.Action)
			}
		}
	}
	for key := range beforeRec {
		if _, ok := atVendor[key[strings.LastIndex(key, "/")+1:]]; !ok {
			done[key] = "delete"
		}
	}
	for key, action := range planned {
		if done[key] != action {
			t.Errorf("%s: planned %s, done %q", key, action, done[key])
		}
	}
	for key, action := range done {
		if _, ok := planned[key]; !ok {
			t.Errorf("%s: %s, not planned", key, action)
		}
	}
	if u := atVendor["t001"]; u.Properties[hubspot.PropFirstName] != "Changed" {
		t.Errorf("t001 at the vendor: %v", u.Properties)
	}
}
