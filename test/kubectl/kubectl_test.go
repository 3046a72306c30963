package kubectl

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/testenv"
)

// command is one kubectl command and what its output must show.
type command struct {
	// printed is the command as README.md or the demo prints it
	// (whitespace collapsed); empty for a command no document prints.
	printed string
	// args are the arguments run: printed with its placeholders filled.
	args  []string
	check func(out string)
}

const (
	ns   = "default"
	name = "platform-team"
	// The UserSync's columns as the operator's status makes them:
	// NAME PROVIDERS DESIRED SYNCED FAILED READY (then AGE).
	providersColumn = "hubspot,propel"
)

var syncHeader = []string{"NAME", "PROVIDERS", "DESIRED", "SYNCED", "FAILED", "READY", "AGE"}

// The UserSync the commands look at, applied by kubectl as README.md says.
const syncYAML = `apiVersion: users.usersync.io/v1alpha1
kind: UserSync
metadata: {name: platform-team, namespace: default}
spec:
  providerRefs: [{name: hubspot}, {name: propel}]
  users:
  - {key: alice, email: alice@example.com, firstName: Alice}
  - {key: bob, email: bob@example.com, firstName: Bob}
`

var syncFile string

// commands are every command README.md and the demo print, then more that
// a category named like a resource would break (the singular name, a short
// name), and the ones the chart's NOTES.txt prints.
var commands = []command{{
	printed: "kubectl apply --server-side",
	args:    []string{"apply", "--server-side", "-f", "<file>"},
	check: func(out string) {
		Expect(out).To(ContainSubstring("usersync.users.usersync.io/" + name + " serverside-applied"))
	},
}, {
	printed: "kubectl get usersyncs",
	args:    []string{"get", "usersyncs"},
	check:   expectOnlyTheUserSync,
}, {
	printed: "kubectl explain usersync.spec",
	args:    []string{"explain", "usersync.spec"},
	check: func(out string) {
		Expect(out).To(ContainSubstring("KIND:       UserSync"))
		Expect(out).To(ContainSubstring("providerRefs"))
	},
}, {
	printed: "kubectl annotate usersync -n NS NAME users.usersync.io/approve-deletions=<token>",
	args:    []string{"annotate", "usersync", "-n", ns, name, "users.usersync.io/approve-deletions=0123abcd"},
	check: func(string) {
		us := &usersv1.UserSync{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, us)).To(Succeed())
		Expect(us.Annotations).To(HaveKeyWithValue("users.usersync.io/approve-deletions", "0123abcd"))
	},
}, {
	printed: "kubectl annotate --overwrite usersync -n NS NAME users.usersync.io/approve-plan=<token>",
	args:    []string{"annotate", "--overwrite", "usersync", "-n", ns, name, "users.usersync.io/approve-plan=4567cdef0123"},
	check: func(string) {
		us := &usersv1.UserSync{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, us)).To(Succeed())
		Expect(us.Annotations).To(HaveKeyWithValue("users.usersync.io/approve-plan", "4567cdef0123"))
	},
}, {
	printed: "kubectl --kubeconfig %s get usersyncs,userproviders -A",
	args:    []string{"--kubeconfig", "<kubeconfig>", "get", "usersyncs,userproviders", "-A"},
	check: func(out string) {
		expectRow(out, ns, "usersync.users.usersync.io/"+name, providersColumn, "4", "4", "0", "True")
		expectProviderRows(out)
		Expect(out).NotTo(ContainSubstring("clusteruserprovider"))
	},
}, {
	printed: "kubectl --kubeconfig %s describe usersync platform-team",
	args:    []string{"--kubeconfig", "<kubeconfig>", "describe", "usersync", name},
	check: func(out string) {
		Expect(out).To(MatchRegexp(`(?m)^Name:\s+` + name + `$`))
		Expect(out).To(MatchRegexp(`(?m)^Kind:\s+UserSync$`))
		Expect(out).To(MatchRegexp(`(?m)^\s+Provider Names:\s+` + providersColumn + `$`))
	},
}, {
	args:  []string{"get", "usersync"},
	check: expectOnlyTheUserSync,
}, {
	args:  []string{"describe", "usersyncs"},
	check: func(out string) { Expect(out).To(MatchRegexp(`(?m)^Name:\s+` + name + `$`)) },
}, {
	args:  []string{"get", "us"},
	check: expectOnlyTheUserSync,
}, {
	printed: "kubectl get usersyncs-all -A",
	args:    []string{"get", "usersyncs-all", "-A"},
	check: func(out string) {
		expectRow(out, ns, "usersync.users.usersync.io/"+name, providersColumn, "4", "4", "0", "True")
		expectProviderRows(out)
		// Cluster-scoped: an empty NAMESPACE cell, so the name comes first.
		expectRow(out, "clusteruserprovider.users.usersync.io/shared", "HubSpot")
	},
}, {
	// What the chart's NOTES.txt prints after an install.
	args: []string{"get", "userproviders,clusteruserproviders,usersyncs", "-A"},
	check: func(out string) {
		expectProviderRows(out)
		expectRow(out, "clusteruserprovider.users.usersync.io/shared", "HubSpot")
		expectRow(out, ns, "usersync.users.usersync.io/"+name, providersColumn, "4", "4", "0", "True")
	},
}, {
	args:  []string{"explain", "userprovider.spec"},
	check: func(out string) { Expect(out).To(ContainSubstring("credentialsRef")) },
}}

var _ = Describe("kubectl commands", Ordered, ContinueOnFailure, func() {
	BeforeAll(func() {
		syncFile = filepath.Join(GinkgoT().TempDir(), "usersync.yaml")
		Expect(os.WriteFile(syncFile, []byte(syncYAML), 0o600)).To(Succeed())
		createProviders()
		kubectl("apply", "--server-side", "-f", syncFile)
		setSyncStatus()
	})

	It("has a case for every kubectl command README.md and the demo print", func() {
		printed := printedCommands()
		Expect(printed).To(ContainElements(
			"kubectl --kubeconfig %s get usersyncs,userproviders -A",
			"kubectl --kubeconfig %s describe usersync platform-team",
			"kubectl get usersyncs"), "the extraction of the printed commands is broken")
		var covered []string
		for _, c := range commands {
			covered = append(covered, c.printed)
		}
		for _, p := range printed {
			Expect(covered).To(ContainElement(p), "%q is printed but not run by this test: add it to commands", p)
		}
	})

	for _, c := range commands {
		It("runs kubectl "+strings.Join(c.args, " "), func() {
			args := slices.Clone(c.args)
			for i, a := range args {
				switch a {
				case "<kubeconfig>":
					args[i] = kubeconfig
				case "<file>":
					args[i] = syncFile
				}
			}
			c.check(kubectl(args...))
		})
	}
})

// printedCommands are the kubectl commands in README.md (in backquotes, or
// after "$ " at the start of a line) and in the demo's strings, with
// whitespace collapsed.
func printedCommands() []string {
	read := func(path string) string {
		b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), path))
		Expect(err).NotTo(HaveOccurred())
		return string(b)
	}
	var out []string
	add := func(matches [][]string) {
		for _, m := range matches {
			c := strings.Join(strings.Fields(m[1]), " ")
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	readme := read("README.md")
	add(regexp.MustCompile("`(kubectl [^`]+)`").FindAllStringSubmatch(readme, -1))
	add(regexp.MustCompile(`(?m)^\$ (kubectl .+)$`).FindAllStringSubmatch(readme, -1))
	demo := read(filepath.Join("hack", "demo", "main.go"))
	add(regexp.MustCompile(`(kubectl (?:--kubeconfig %s )?[a-z][^\\"]*)`).FindAllStringSubmatch(demo, -1))
	return out
}

// expectOnlyTheUserSync checks a table of UserSyncs alone: their columns,
// the one UserSync, and no provider (which a category of the same name as
// the resource would list too).
func expectOnlyTheUserSync(out string) {
	GinkgoHelper()
	rows := table(out)
	Expect(rows).To(HaveLen(2), "a header and the one UserSync:\n%s", out)
	Expect(rows[0]).To(Equal(syncHeader))
	Expect(rows[1][:6]).To(Equal([]string{name, providersColumn, "4", "4", "0", "True"}))
}

// expectProviderRows checks both UserProviders' rows of a table with -A:
// the counts a provider with no UserSync has print 0.
func expectProviderRows(out string) {
	GinkgoHelper()
	expectRow(out, ns, "userprovider.users.usersync.io/hubspot", "HubSpot", "True", usersv1.ReasonAuthenticated, "1", "2")
	expectRow(out, ns, "userprovider.users.usersync.io/propel", "Propel", "True", usersv1.ReasonAuthenticated, "0", "0")
}

// expectRow checks that a row of out starts with cells.
func expectRow(out string, cells ...string) {
	GinkgoHelper()
	for _, row := range table(out) {
		if len(row) >= len(cells) && slices.Equal(row[:len(cells)], cells) {
			return
		}
	}
	Fail("no row starts with " + strings.Join(cells, " ") + " in:\n" + out)
}

// table splits kubectl's output into rows of cells (no cell here holds a
// space), leaving out blank lines.
func table(out string) [][]string {
	var rows [][]string
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 {
			rows = append(rows, f)
		}
	}
	return rows
}

// createProviders creates the UserProviders hubspot (serving the UserSync)
// and propel (serving none yet: its counts are 0), each with a status, and
// a ClusterUserProvider without one.
func createProviders() {
	ready := []metav1.Condition{{Type: usersv1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: usersv1.ReasonAuthenticated, Message: "ok", LastTransitionTime: metav1.Now()}}
	for _, p := range []struct {
		name         string
		typ          usersv1.ProviderType
		syncs, users int32
	}{{"hubspot", usersv1.ProviderHubSpot, 1, 2}, {"propel", usersv1.ProviderPropel, 0, 0}} {
		up := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p.name},
			Spec: usersv1.ProviderSpec{Type: p.typ,
				CredentialsRef: usersv1.SecretKeyReference{Name: p.name + "-credentials", Key: "token"}}}
		Expect(k8s.Create(ctx, up)).To(Succeed())
		// As the operator writes it: a count of 0 is left out of the JSON.
		up.Status = usersv1.ProviderStatus{ObservedGeneration: up.Generation, Conditions: ready,
			UserSyncs: p.syncs, Users: p.users}
		Expect(k8s.Status().Update(ctx, up)).To(Succeed())
	}
	cup := &usersv1.ClusterUserProvider{ObjectMeta: metav1.ObjectMeta{Name: "shared"},
		Spec: usersv1.ClusterUserProviderSpec{ProviderSpec: usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot,
			CredentialsRef: usersv1.SecretKeyReference{Name: "shared-credentials", Key: "token", Namespace: ns}}}}
	Expect(k8s.Create(ctx, cup)).To(Succeed())
}

// setSyncStatus writes the status the operator would once both providers
// synced both users: no record failed, so failed is left out of the JSON.
func setSyncStatus() {
	us := &usersv1.UserSync{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, us)).To(Succeed())
	us.Status.ObservedGeneration = us.Generation
	us.Status.ProviderNames = usersv1.ProviderNames(us.Spec.ProviderRefs)
	Expect(us.Status.ProviderNames).To(Equal(providersColumn))
	us.Status.Summary = usersv1.Summary{Desired: 4, Synced: 4}
	meta.SetStatusCondition(&us.Status.Conditions, metav1.Condition{Type: usersv1.ConditionReady,
		Status: metav1.ConditionTrue, Reason: usersv1.ReasonSynced, Message: "all 4 records are synced",
		ObservedGeneration: us.Generation})
	Expect(k8s.Status().Update(ctx, us)).To(Succeed())
}
