package chartrbac

import (
	"regexp"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// install is one install of the chart: its RBAC applied (less the cut, if
// any), the workload applied, and the operator running as the chart's
// ServiceAccount. Each spec has its own id, so its own release namespace,
// ServiceAccount, cluster-scoped role names and workload namespaces.
type install struct {
	namespace string // the release's
	workload  *workload
	operator  *operator
}

// installChart renders the chart for release namespace "uso-<id>", with
// watchNamespaces set to the workload's two namespaces when watch is true.
func installChart(id string, watch bool, c *cut) install {
	GinkgoHelper()
	in := install{namespace: "uso-" + id}
	a, b := id+"-a", id+"-b"
	var values map[string]any
	if watch {
		values = map[string]any{"watchNamespaces": []string{a, b}}
	}
	objs := render(in.namespace, values)
	kubeconfig := serviceAccountKubeconfig(in.namespace, applyRBAC(objs, c))
	in.workload = applyWorkload(a, b)
	DeferCleanup(in.workload.remove)
	in.operator = startOperator(kubeconfig, operatorArgs(objs, in.namespace))
	return in
}

// converges checks everything the chart's RBAC must allow: the sync, the
// status and events the operator writes, the leader Lease, and the release
// of the finalizers; and that the operator's log holds no denial.
func (in install) converges() {
	GinkgoHelper()
	start := time.Now()
	Eventually(in.workload.converged, 45*time.Second, 250*time.Millisecond).Should(Succeed())
	GinkgoWriter.Printf("converged in %s\n", time.Since(start).Round(10*time.Millisecond))
	expectLeader(in.namespace)
	in.workload.deleteSyncs()
	Expect(in.operator.denials()).To(BeEmpty(), "the API server denied the operator calls under the chart's RBAC")
}

var _ = Describe("The operator under the chart's RBAC", func() {
	It("syncs two vendors and a ClusterUserProvider cluster-wide (ClusterRole, leader-election Role)", func() {
		installChart("all", false, nil).converges()
	})

	It("syncs the watched namespaces with watchNamespaces (a Role per namespace) and leaves the others alone", func() {
		// This release and the one of "cut-ns" below are two releases of
		// the same name with watchNamespaces in one cluster, as provider
		// shards are: their objects (in "default" too) must not collide.
		//
		// A UserSync in a namespace the release does not watch, created
		// before the operator starts.
		const other = "ns-c"
		ensureNamespace(other)
		em := newHubSpot()
		create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "hubspot"},
			Data: map[string][]byte{"token": []byte(hubspotToken)}})
		create(&usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "hubspot"},
			Spec: hubspotSpec(em, "hubspot", "")})
		create(&usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: syncName},
			Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hubspot"}},
				Users: users(other, 2)}})
		DeferCleanup(func() {
			Expect(k8s.DeleteAllOf(ctx, &usersv1.UserSync{}, client.InNamespace(other))).To(Succeed())
			Expect(k8s.DeleteAllOf(ctx, &usersv1.UserProvider{}, client.InNamespace(other))).To(Succeed())
		})

		installChart("ns", true, nil).converges()

		var us usersv1.UserSync
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: other, Name: syncName}, &us)).To(Succeed())
		Expect(us.Finalizers).To(BeEmpty(), "the operator took the UserSync of an unwatched namespace")
		Expect(us.Status.Conditions).To(BeEmpty(), "the operator wrote the status of an unwatched namespace's UserSync")
		Expect(em.Users()).To(BeEmpty())
	})

	// The same install with one grant cut from the chart fails: the
	// operator's log shows the denial. Each cut is one a real chart bug
	// could make, and each is found in seconds.
	DescribeTable("catches a grant the chart lacks",
		func(id string, watch bool, c cut, resource string) {
			in := installChart(id, watch, &c)
			denied := regexp.MustCompile(`cannot \w+ resource \\*"` + regexp.QuoteMeta(resource) + `\\*"`)
			start := time.Now()
			var lines []string
			Eventually(in.operator.denials, 30*time.Second, 200*time.Millisecond).Should(ContainElement(MatchRegexp(denied.String()), &lines),
				"with %s, the operator's log shows no denial of %s", c, resource)
			GinkgoWriter.Printf("without %s: denied after %s: %s\n", c, time.Since(start).Round(10*time.Millisecond), lines[0])
		},
		Entry("events create (the Synced events)", "cut-events", false,
			cut{kind: "ClusterRole", group: "events.k8s.io", resource: "events", verb: "create"}, "events"),
		Entry("usersyncs/status update (every record's result)", "cut-status", false,
			cut{kind: "ClusterRole", group: "users.usersync.io", resource: "usersyncs/status", verb: "update"}, "usersyncs/status"),
		Entry("userproviders/status patch (the provider's conditions and intents)", "cut-provider", false,
			cut{kind: "ClusterRole", group: "users.usersync.io", resource: "userproviders/status", verb: "patch"}, "userproviders/status"),
		Entry("leases in the leader-election Role", "cut-lease", false,
			cut{kind: "Role", group: "coordination.k8s.io", resource: "leases"}, "leases"),
		Entry("core events in the leader-election Role (the elector's LeaderElection event)", "cut-lease-events", false,
			cut{kind: "Role", group: "", resource: "events", verb: "create"}, "events"),
		// Not "list": client-go's informers list through a watch
		// (WatchList) on this API server, so the operator never lists;
		// test/chart checks the list grants against config/rbac.
		Entry("namespaces watch with watchNamespaces (the ClusterRole of cluster-scoped objects)", "cut-ns", true,
			cut{kind: "ClusterRole", group: "", resource: "namespaces", verb: "watch"}, "namespaces"),
	)
})
