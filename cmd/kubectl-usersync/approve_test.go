package main

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
)

func TestDeletionToken(t *testing.T) {
	msg := "5 of 6 users would be deleted at once: approve with the annotation users.usersync.io/approve-deletions=0123abcd4567, or set spec.deletionPolicy: Orphan to forget them"
	if got := deletionToken(msg); got != "0123abcd4567" {
		t.Errorf("record message: %q", got)
	}
	if got := deletionToken("... (kubectl annotate usersync -n ns x users.usersync.io/approve-deletions=feed)"); got != "feed" {
		t.Errorf("provider line: %q", got)
	}
	if got := deletionToken("no token here"); got != "" {
		t.Errorf("no token: %q", got)
	}
}

// annotations are those of UserSync ns/team.
func annotations(t *testing.T, ns string) map[string]string {
	t.Helper()
	us := &usersv1.UserSync{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "team"}, us); err != nil {
		t.Fatal(err)
	}
	return us.Annotations
}

func TestApprovePlan(t *testing.T) {
	ns := newNamespace(t)
	newSync(t, ns, "team", usersv1.UserSyncSpec{
		ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hubspot"}, {Kind: usersv1.KindUserProvider, Name: "propel"}}, Mode: usersv1.ModePlan,
		Users: []usersv1.User{{Key: "alice"}, {Key: "bob"}},
	}, usersv1.UserSyncStatus{
		Plan: []usersv1.ProviderPlan{
			{Provider: "UserProvider/hubspot", Creates: 2, Calls: 2, Token: "aaaaaaaaaaaa"},
			{Provider: "UserProvider/propel", Creates: 1, Updates: 1, Calls: 2, Token: "bbbbbbbbbbbb",
				EstimatedDuration: &metav1.Duration{}},
		},
		Results: []usersv1.RecordResult{
			{Provider: "UserProvider/hubspot", Key: "alice", State: usersv1.StatePending, Action: "Create", Reason: usersv1.ReasonPlanned},
			{Provider: "UserProvider/hubspot", Key: "bob", State: usersv1.StatePending, Action: "Create", Reason: usersv1.ReasonPlanned},
			{Provider: "UserProvider/propel", Key: "alice", State: usersv1.StatePending, Action: "Update", Reason: usersv1.ReasonPlanned},
		},
	})

	// Refused at the prompt: nothing is written.
	out, errOut, code := plugin(t, "n\n", "approve", "team", "-n", ns)
	if code != 1 || !strings.Contains(errOut, "not approved") {
		t.Errorf("answer n: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"UserProvider/hubspot: 2 creates, 0 updates, 0 deletes in 2 calls",
		"UserProvider/propel: 1 creates, 1 updates, 0 deletes in 2 calls (at least 0s)",
		"UserProvider/hubspot Create: alice, bob",
		"UserProvider/propel Update: alice",
		"users.usersync.io/approve-plan=aaaaaaaaaaaa,bbbbbbbbbbbb",
		"Approve? [y/N]: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if a := annotations(t, ns)[usersv1.AnnotationApprovePlan]; a != "" {
		t.Fatalf("refused approval wrote %q", a)
	}

	_, errOut, code = plugin(t, "y\n", "approve", "team", "-n", ns)
	if code != 0 {
		t.Fatalf("answer y: exit %d: %s", code, errOut)
	}
	if a := annotations(t, ns)[usersv1.AnnotationApprovePlan]; a != "aaaaaaaaaaaa,bbbbbbbbbbbb" {
		t.Errorf("approve-plan = %q", a)
	}
	// The operator's own check accepts what approve wrote.
	if !planner.ApprovedBy(annotations(t, ns)[usersv1.AnnotationApprovePlan], "bbbbbbbbbbbb") {
		t.Error("planner.ApprovedBy refuses the annotation")
	}
}

func TestApproveDeletions(t *testing.T) {
	ns := newNamespace(t)
	token := planner.DeletionToken([]string{"a", "b", "c", "d"})
	msg := "4 of 5 users would be deleted at once: approve with the annotation users.usersync.io/approve-deletions=" + token +
		", or set spec.deletionPolicy: Orphan to forget them"
	var results []usersv1.RecordResult
	for _, k := range []string{"a", "b", "c", "d"} {
		results = append(results, usersv1.RecordResult{Provider: "UserProvider/hubspot", Key: k, ExternalID: "id-" + k,
			State: usersv1.StateDeleting, Reason: usersv1.ReasonDeletionHeld, Message: msg})
	}
	newSync(t, ns, "team", usersv1.UserSyncSpec{
		ProviderRefs:   []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hubspot"}},
		DeletionPolicy: usersv1.DeletionPolicyDelete,
		Users:          []usersv1.User{{Key: "e"}},
	}, usersv1.UserSyncStatus{
		Providers: []usersv1.ProviderSyncStatus{{Provider: "UserProvider/hubspot", Reason: usersv1.ReasonDeletionHeld,
			Message: msg + " (kubectl annotate usersync -n " + ns + " team users.usersync.io/approve-deletions=" + token + ")"}},
		Results: results,
	})
	out, errOut, code := plugin(t, "", "approve", "team", "-n", ns, "--yes")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"held by the mass-deletion guard in UserSync " + ns + "/team: 4 records",
		"UserProvider/hubspot Delete: a, b, c, d", "approved"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Approve?") {
		t.Error("--yes asked")
	}
	if a := annotations(t, ns)[usersv1.AnnotationApproveDeletions]; a != token {
		t.Errorf("approve-deletions = %q, want %q", a, token)
	}
}

func TestApproveNothing(t *testing.T) {
	ns := newNamespace(t)
	newSync(t, ns, "team", usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hubspot"}}}, usersv1.UserSyncStatus{})
	_, errOut, code := plugin(t, "", "approve", "team", "-n", ns, "--yes")
	if code != 1 || !strings.Contains(errOut, "nothing waiting for approval") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
