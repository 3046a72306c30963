package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/app"
	"github.com/usersync/usersync-operator/internal/declared"
	"github.com/usersync/usersync-operator/internal/planner"
)

// newProvider creates a HubSpot UserProvider (no operator runs: it has no
// status, and no Secret: plan needs no credentials).
func newProvider(t *testing.T, ns, name string, rl *usersv1.RateLimit) {
	t.Helper()
	p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: usersv1.ProviderSpec{
		Type: usersv1.ProviderHubSpot, CredentialsRef: usersv1.SecretKeyReference{Name: "hubspot", Key: "token"}, RateLimit: rl}}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
}

// synced is the record the operator stores once it wrote u.
func synced(provider string, u usersv1.User, id string) usersv1.RecordResult {
	written, err := (*declared.Mapping)(nil).Map(&u, nil)
	if err != nil {
		panic(err)
	}
	return usersv1.RecordResult{Provider: provider, Key: u.Key, ExternalID: id, State: usersv1.StateSynced,
		Action: "Created", Hash: planner.Hash(written.User)}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// platformTeam is a UserSync the operator has synced: alice, bob, carol
// at UserProvider/hubspot.
func platformTeam(t *testing.T, ns string) {
	t.Helper()
	users := []usersv1.User{
		{Key: "alice", Email: "alice@example.com", FirstName: "Alice"},
		{Key: "bob", Email: "bob@example.com"},
		{Key: "carol", Email: "carol@example.com"},
	}
	newSync(t, ns, "team", usersv1.UserSyncSpec{
		ProviderRefs:   []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hubspot"}},
		DeletionPolicy: usersv1.DeletionPolicyDelete, Users: users,
	}, usersv1.UserSyncStatus{Results: []usersv1.RecordResult{
		synced("UserProvider/hubspot", users[0], "1"), synced("UserProvider/hubspot", users[1], "2"),
		synced("UserProvider/hubspot", users[2], "3"),
	}})
}

// changed renames alice and gives her an attribute, keeps bob, removes
// carol and adds dave.
const changed = `apiVersion: users.usersync.io/v1alpha1
kind: UserSync
metadata: {name: team}
spec:
  providerRefs: [{name: hubspot}]
  deletionPolicy: Delete
  users:
  - {key: alice, email: alice@example.com, firstName: Alicia, attributes: {seats: 3}}
  - {key: bob, email: bob@example.com}
  - {key: dave, email: dave@example.com}
`

const unchanged = `apiVersion: users.usersync.io/v1alpha1
kind: UserSync
metadata: {name: team}
spec:
  providerRefs: [{name: hubspot}]
  deletionPolicy: Delete
  users:
  - {key: alice, email: alice@example.com, firstName: Alice}
  - {key: bob, email: bob@example.com}
  - {key: carol, email: carol@example.com}
`

func TestPlanChanges(t *testing.T) {
	ns := newNamespace(t)
	newProvider(t, ns, "hubspot", &usersv1.RateLimit{Requests: 2, Period: metav1.Duration{Duration: 10 * time.Second}})
	platformTeam(t, ns)

	out, errOut, code := plugin(t, "", "plan", "-f", writeFile(t, changed), "-n", ns)
	if code != 2 {
		t.Fatalf("exit %d, want 2 (changes); stderr %s\n%s", code, errOut, out)
	}
	for _, want := range []string{
		"UserSync " + ns + "/team\n",
		"UserProvider/hubspot (HubSpot)",
		`alice   update   firstName: "Alice" → "Alicia", seats: (none) → 3`,
		"dave    create   new user",
		"carol   delete   left spec.users (deletionPolicy Delete)",
		// HubSpot without idProperty looks new users up by email first:
		// a create, a search, an update and an archive call; 2 requests
		// per 10s send two at once, then one every 5s.
		"1 to create, 1 to update, 1 to delete: 4 vendor calls, at least 10s at 2 requests per 10s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "bob") {
		t.Errorf("bob does not change:\n%s", out)
	}
	// Nothing was written.
	us := &usersv1.UserSync{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "team"}, us); err != nil {
		t.Fatal(err)
	}
	if us.Generation != 1 || len(us.Spec.Users) != 3 || us.Spec.Users[0].FirstName != "Alice" {
		t.Errorf("plan wrote the UserSync: generation %d, users %+v", us.Generation, us.Spec.Users)
	}

	// The mass-deletion guard, as an operator with stricter flags runs it.
	out, _, code = plugin(t, "", "plan", "-f", writeFile(t, changed), "-n", ns, "--deletion-guard-min", "0", "--deletion-guard-percent", "10")
	if code != 2 || !regexp.MustCompile(`carol +hold +delete held by the mass-deletion guard: 1 of 3 users`).MatchString(out) ||
		!strings.Contains(out, "1 to create, 1 to update, 0 to delete") {
		t.Errorf("exit %d, guard:\n%s", code, out)
	}

	// From stdin, with the namespace in the manifest.
	out, errOut, code = plugin(t, strings.Replace(unchanged, "{name: team}", "{name: team, namespace: "+ns+"}", 1), "plan", "-f", "-")
	if code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("unchanged manifest: exit %d, stderr %s\n%s", code, errOut, out)
	}
	// -n that contradicts the manifest, as kubectl refuses it.
	_, errOut, code = plugin(t, strings.Replace(unchanged, "{name: team}", "{name: team, namespace: elsewhere}", 1), "plan", "-f", "-", "-n", ns)
	if code != 1 || !strings.Contains(errOut, "does not match the namespace") {
		t.Errorf("namespace mismatch: exit %d, stderr %q", code, errOut)
	}
}

func TestPlanNewSyncConflict(t *testing.T) {
	ns := newNamespace(t)
	newProvider(t, ns, "hubspot", nil)
	platformTeam(t, ns)
	// zeta sorts after team: a UserSync created in the same second as
	// another loses an identity to it by name, as in the operator.
	manifest := `apiVersion: users.usersync.io/v1alpha1
kind: UserSync
metadata: {name: zeta}
spec:
  providerRefs: [{name: hubspot}]
  users:
  - {key: al, email: ALICE@example.com}
  - {key: zoe, email: zoe@example.com}
`
	out, errOut, code := plugin(t, "", "plan", "-f", writeFile(t, manifest), "-n", ns)
	if code != 2 {
		t.Fatalf("exit %d; stderr %s\n%s", code, errOut, out)
	}
	for _, want := range []string{
		"UserSync " + ns + "/zeta (new)",
		`al    fail     Conflict: identity "alice@example.com" is already declared by UserSync ` + ns + `/team (key alice)`,
		"zoe   create   new user",
		"1 to create, 0 to update, 0 to delete: 2 vendor calls, at least 0s at 100 requests per 10s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "zeta"}, &usersv1.UserSync{}); err == nil {
		t.Error("plan created the UserSync")
	}
}

func TestPlanErrors(t *testing.T) {
	ns := newNamespace(t)
	newProvider(t, ns, "hubspot", nil)
	for _, tc := range []struct {
		name, manifest, want string
	}{{
		name: "unknown field",
		manifest: `apiVersion: users.usersync.io/v1alpha1
kind: UserSync
metadata: {name: team}
spec:
  providerRefs: [{name: hubspot}]
  userz: []
`,
		want: `unknown field "spec.userz"`,
	}, {
		name: "enum",
		manifest: `apiVersion: users.usersync.io/v1alpha1
kind: UserSync
metadata: {name: team}
spec:
  providerRefs: [{name: hubspot}]
  deletionPolicy: Sometimes
`,
		want: `spec.deletionPolicy: Unsupported value: "Sometimes"`,
	}, {
		name: "provider not found",
		manifest: `apiVersion: users.usersync.io/v1alpha1
kind: UserSync
metadata: {name: team}
spec:
  providerRefs: [{name: hubspt}]
  users: [{key: a}]
`,
		want: `UserProvider "hubspt" not found in namespace ` + ns,
	}, {
		name:     "not YAML",
		manifest: "kind: [",
		want:     "reading ",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := plugin(t, "", "plan", "-f", writeFile(t, tc.manifest), "-n", ns)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want 1 and %q in stderr %q\n%s", code, tc.want, errOut, out)
			}
		})
	}
}

func TestForecast(t *testing.T) {
	p := &provider{}
	p.factory, _ = app.NewRegistry().Get(string(usersv1.ProviderHubSpot))
	for _, tc := range []struct {
		calls int
		rl    *usersv1.RateLimit
		want  string
	}{
		{0, nil, "0 vendor calls"},
		{1, nil, "1 vendor call, at least 0s at 100 requests per 10s"},
		{250, nil, "250 vendor calls, at least 15s at 100 requests per 10s"},
		{31, &usersv1.RateLimit{Requests: 10, Period: metav1.Duration{Duration: time.Second}}, "31 vendor calls, at least 2s at 10 requests per 1s"},
	} {
		p.spec.RateLimit = tc.rl
		if got := forecast(p, tc.calls); got != tc.want {
			t.Errorf("forecast(%d) = %q, want %q", tc.calls, got, tc.want)
		}
	}
}

// TestPlanSharedCalls: the calls of a UserSync sent on apply are those of
// the operator's loop that sends them, which packs the pending changes of
// the provider's other UserSyncs into the same batches; a UserSync in mode
// Plan is sent once approved, on its own, as its status.plan counts it.
func TestPlanSharedCalls(t *testing.T) {
	ns := newNamespace(t)
	p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hubspot"}, Spec: usersv1.ProviderSpec{
		Type: usersv1.ProviderHubSpot, CredentialsRef: usersv1.SecretKeyReference{Name: "hubspot", Key: "token"},
		BatchSize: ptr.To(int32(4))}}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	ref := []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hubspot"}}
	// In the cluster: other, declared and not synced yet (its 2 creates are
	// pending), and waiting, in mode Plan (its create waits for approval).
	newSync(t, ns, "other", usersv1.UserSyncSpec{ProviderRefs: ref, Users: []usersv1.User{
		{Key: "o1", Email: "o1@example.com"}, {Key: "o2", Email: "o2@example.com"}}}, usersv1.UserSyncStatus{})
	newSync(t, ns, "waiting", usersv1.UserSyncSpec{ProviderRefs: ref, Mode: usersv1.ModePlan, Users: []usersv1.User{
		{Key: "w1", Email: "w1@example.com"}}}, usersv1.UserSyncStatus{})
	manifest := `apiVersion: users.usersync.io/v1alpha1
kind: UserSync
metadata: {name: team}
spec:
  providerRefs: [{name: hubspot}]
  users:
  - {key: a, email: a@example.com}
  - {key: b, email: b@example.com}
  - {key: c, email: c@example.com}
---
apiVersion: users.usersync.io/v1alpha1
kind: UserSync
metadata: {name: reviewed}
spec:
  providerRefs: [{name: hubspot}]
  mode: Plan
  users:
  - {key: r1, email: r1@example.com}
  - {key: r2, email: r2@example.com}
`
	out, errOut, code := plugin(t, "", "plan", "-f", writeFile(t, manifest), "-n", ns)
	if code != 2 {
		t.Fatalf("exit %d; stderr %s\n%s", code, errOut, out)
	}
	t.Log(out)
	for _, want := range []string{
		// team's 3 creates go out with other's 2: 2 create batches of at
		// most 4, and the lookups before them, 2 batches (alone, team's
		// would take 1 and 1). Neither UserSync in mode Plan rides along.
		"3 to create, 0 to update, 0 to delete: 4 vendor calls, shared with the changes of 1 other UserSync (" + ns + "/other), at least 0s",
		// reviewed is held until approved; then its 2 creates go alone.
		"2 to create, 0 to update, 0 to delete: 2 vendor calls once approved (this UserSync's changes alone), at least 0s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, ns+"/waiting") || strings.Contains(out, ns+"/reviewed)") {
		t.Errorf("a UserSync in mode Plan shares no call before it is approved:\n%s", out)
	}
}

// TestPlanMappedNames: the fields an update changes are named as the
// vendor gets them, through the provider's attributeMapping.
func TestPlanMappedNames(t *testing.T) {
	ns := newNamespace(t)
	spec := usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot, CredentialsRef: usersv1.SecretKeyReference{Name: "hubspot", Key: "token"},
		AttributeMapping: []usersv1.AttributeMapping{{Attribute: "title", To: "hs_job_title"}}}
	if err := k8s.Create(ctx, &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hubspot"}, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	m, err := declared.Compile(&spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice := usersv1.User{Key: "alice", Email: "alice@example.com",
		Attributes: map[string]usersv1.AttributeValue{"title": usersv1.StringValue("Engineer")}}
	written, err := m.Map(&alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	newSync(t, ns, "team", usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hubspot"}},
		Users: []usersv1.User{alice}}, usersv1.UserSyncStatus{Results: []usersv1.RecordResult{{Provider: "UserProvider/hubspot",
		Key: "alice", ExternalID: "1", State: usersv1.StateSynced, Action: "Created", Hash: planner.Hash(written.User)}}})
	manifest := `apiVersion: users.usersync.io/v1alpha1
kind: UserSync
metadata: {name: team}
spec:
  providerRefs: [{name: hubspot}]
  users:
  - {key: alice, email: alice@example.com, attributes: {title: Lead}}
`
	out, errOut, code := plugin(t, "", "plan", "-f", writeFile(t, manifest), "-n", ns)
	if want := `alice   update   hs_job_title: "Engineer" → "Lead"`; code != 2 || !strings.Contains(out, want) {
		t.Errorf("exit %d, want %q in:\n%s%s", code, want, out, errOut)
	}
}
