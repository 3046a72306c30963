package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

var (
	t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

	sampleResults = []usersv1.RecordResult{
		{Provider: "UserProvider/hubspot", Key: "alice", ExternalID: "101", State: usersv1.StateSynced, Action: "Created",
			LastSyncTime: &metav1.Time{Time: t0.Add(-3 * time.Minute)}, Hash: "aaaa"},
		{Provider: "UserProvider/hubspot", Key: "bob", State: usersv1.StateFailed, Action: "Create", Reason: "VALIDATION_ERROR",
			Message:  "Property values were not valid: hs_job_title is longer than the vendor allows for this portal, which is a rather long message indeed",
			Attempts: 1, Hash: "bbbb"},
		{Provider: "UserProvider/hubspot", Key: "carol", ExternalID: "103", State: usersv1.StatePending, Reason: usersv1.ReasonDrifted,
			Message: "hs_job_title differs", Hash: "cccc"},
		{Provider: "UserProvider/propel", Key: "alice", State: usersv1.StatePending, Reason: "RateLimited", Attempts: 2},
		{Provider: "UserProvider/propel", Key: "dave", ExternalID: "p4", State: usersv1.StateDeleting, Action: "Delete"},
		{Provider: "UserProvider/propel", Key: "erin", ExternalID: "p5", State: usersv1.StateDrifted, Reason: usersv1.ReasonMissing},
	}
)

func TestPrintRecords(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter statusFilter
		wide   bool
		want   string
	}{{
		name: "all",
		want: `PROVIDER               KEY     STATE      ACTION    REASON             MESSAGE
UserProvider/hubspot   alice   Synced     Created   -                  -
UserProvider/hubspot   bob     Failed     Create    VALIDATION_ERROR   Property values were not valid: hs_job_title is longer than the vendor allows f…
UserProvider/hubspot   carol   Pending    -         Drifted            hs_job_title differs
UserProvider/propel    alice   Pending    -         RateLimited        -
UserProvider/propel    dave    Deleting   Delete    -                  -
UserProvider/propel    erin    Drifted    -         Missing            -
`,
	}, {
		name:   "failed, wide",
		filter: statusFilter{failed: true},
		wide:   true,
		want: `PROVIDER               KEY   STATE    ACTION   REASON             MESSAGE                                                                                                                                EXTERNAL-ID   ATTEMPTS   LAST-SYNC   HASH
UserProvider/hubspot   bob   Failed   Create   VALIDATION_ERROR   Property values were not valid: hs_job_title is longer than the vendor allows for this portal, which is a rather long message indeed   -             1          <none>      bbbb
`,
	}, {
		name:   "pending",
		filter: statusFilter{pending: true},
		want: `PROVIDER               KEY     STATE      ACTION   REASON        MESSAGE
UserProvider/hubspot   carol   Pending    -        Drifted       hs_job_title differs
UserProvider/propel    alice   Pending    -        RateLimited   -
UserProvider/propel    dave    Deleting   Delete   -             -
`,
	}, {
		name:   "drifted",
		filter: statusFilter{drifted: true},
		want: `PROVIDER               KEY     STATE     ACTION   REASON    MESSAGE
UserProvider/hubspot   carol   Pending   -        Drifted   hs_job_title differs
UserProvider/propel    erin    Drifted   -        Missing   -
`,
	}, {
		name:   "failed or drifted at hubspot, wide",
		filter: statusFilter{failed: true, drifted: true, provider: "hubspot"},
		wide:   true,
		want: `PROVIDER               KEY     STATE     ACTION   REASON             MESSAGE                                                                                                                                EXTERNAL-ID   ATTEMPTS   LAST-SYNC   HASH
UserProvider/hubspot   bob     Failed    Create   VALIDATION_ERROR   Property values were not valid: hs_job_title is longer than the vendor allows for this portal, which is a rather long message indeed   -             1          <none>      bbbb
UserProvider/hubspot   carol   Pending   -        Drifted            hs_job_title differs                                                                                                                   103           0          <none>      cccc
`,
	}, {
		name:   "synced record, wide: its age",
		filter: statusFilter{provider: "UserProvider/hubspot", failed: false},
		wide:   true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var recs []usersv1.RecordResult
			for i := range sampleResults {
				if tc.filter.keep(&sampleResults[i]) {
					recs = append(recs, sampleResults[i])
				}
			}
			var b bytes.Buffer
			if err := printRecords(&b, recs, tc.wide, painter{}, t0); err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if !strings.Contains(b.String(), "101           0          3m          aaaa") {
					t.Errorf("want alice's age 3m in:\n%s", b.String())
				}
				return
			}
			if diff := cmp.Diff(tc.want, b.String()); diff != "" {
				t.Errorf("table (-want +got):\n%s", diff)
			}
		})
	}
}

// A coloured column stays aligned: every cell carries escapes of one length.
func TestColoursKeepAlignment(t *testing.T) {
	var b bytes.Buffer
	if err := printRecords(&b, sampleResults[:3], false, painter{on: true}, t0); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	col := strings.Index(lines[1], "Created")
	for _, l := range lines[2:] {
		if i := strings.Index(l, "Create"); i >= 0 && i != col && !strings.Contains(l, "- ") {
			t.Errorf("ACTION column moved: %q (want at %d)", l, col)
		}
	}
	if !strings.Contains(lines[1], colorGreen+"Synced"+colorReset) || !strings.Contains(lines[2], colorRed+"Failed"+colorReset) {
		t.Errorf("states not coloured:\n%s", b.String())
	}
}

// newNamespace makes a namespace of its own for a test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// newSync creates a UserSync and writes status to it, as the operator would.
func newSync(t *testing.T, ns, name string, spec usersv1.UserSyncSpec, status usersv1.UserSyncStatus) {
	t.Helper()
	us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	if err := k8s.Create(ctx, us); err != nil {
		t.Fatal(err)
	}
	us.Status = status
	if err := k8s.Status().Update(ctx, us); err != nil {
		t.Fatal(err)
	}
}

func TestStatusCommand(t *testing.T) {
	ns := newNamespace(t)
	newSync(t, ns, "platform-team", usersv1.UserSyncSpec{
		ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hubspot"}, {Kind: usersv1.KindUserProvider, Name: "propel"}},
		Users:        []usersv1.User{{Key: "alice"}, {Key: "bob"}, {Key: "carol"}, {Key: "erin"}},
	}, usersv1.UserSyncStatus{
		ProviderNames: "hubspot,propel",
		Summary:       usersv1.Summary{Desired: 8, Synced: 1, Pending: 2, Failed: 1, Drifted: 1},
		Conditions: []metav1.Condition{{Type: usersv1.ConditionReady, Status: metav1.ConditionFalse, Reason: usersv1.ReasonFailed,
			Message: "1 records failed", LastTransitionTime: metav1.Now()}},
		Results: sampleResults,
	})

	out, errOut, code := plugin(t, "", "status", "platform-team", "-n", ns, "--failed")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"UserSync " + ns + "/platform-team  mode Apply  generation 1 (observed 0)",
		"Records: 8 desired, 1 synced, 2 pending, 1 failed, 1 drifted",
		"Ready: False (Failed) 1 records failed",
		"UserProvider/hubspot   bob   Failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "alice") {
		t.Errorf("--failed printed a Synced record:\n%s", out)
	}

	out, _, code = plugin(t, "", "status", "platform-team", "-n", ns, "--pending", "-o", "json")
	var got []usersv1.RecordResult
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
		t.Fatalf("exit %d, -o json is not a list of records (%v):\n%s", code, err, out)
	}
	var keys []string
	for _, r := range got {
		keys = append(keys, r.Provider+" "+r.Key)
	}
	if diff := cmp.Diff([]string{"UserProvider/hubspot carol", "UserProvider/propel alice", "UserProvider/propel dave"}, keys); diff != "" {
		t.Errorf("--pending -o json (-want +got):\n%s", diff)
	}

	out, _, code = plugin(t, "", "status", "-n", ns)
	want := "NAME            MODE    PROVIDERS        DESIRED   SYNCED   PENDING   FAILED   DRIFTED   READY\n" +
		"platform-team   Apply   hubspot,propel   8         1        2         1        1         False\n"
	if code != 0 || out != want {
		t.Errorf("exit %d, list (-want +got):\n%s", code, cmp.Diff(want, out))
	}
	out, _, code = plugin(t, "", "status", "-A")
	if code != 0 || !strings.Contains(out, "NAMESPACE") || !regexp.MustCompile(`(?m)^`+ns+` +platform-team +Apply`).MatchString(out) {
		t.Errorf("exit %d, -A:\n%s", code, out)
	}

	_, errOut, code = plugin(t, "", "status", "nope", "-n", ns)
	if code != 1 || !strings.Contains(errOut, `usersyncs.users.usersync.io "nope" not found`) {
		t.Errorf("missing UserSync: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = plugin(t, "", "status", "platform-team", "-n", ns, "-o", "table")
	if code != 1 || !strings.Contains(errOut, "unsupported output format") {
		t.Errorf("-o table: exit %d, stderr %q", code, errOut)
	}
}
