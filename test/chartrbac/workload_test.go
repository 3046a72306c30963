package chartrbac

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
)

const (
	hubspotToken       = "pat-chart-rbac"
	propelClientID     = "usersync-chart-rbac"
	propelClientSecret = "propel-chart-rbac-secret"
	propelSource       = "k8s-chart-rbac"
	syncName           = "team"
)

// workload is what an admin applies for the operator to sync: in
// namespace a, a UserSync of two vendors (HubSpot and Propel UserProviders,
// each with its Secret); in namespace b, a UserSync of a ClusterUserProvider
// (HubSpot) whose Secret is in b and whose namespaceSelector admits b only.
// Each vendor account is an emulator of its own.
type workload struct {
	a, b           string
	cluster        string // the ClusterUserProvider
	hubspot        *hsemu.Emulator
	propel         *propemu.Emulator
	shared         *hsemu.Emulator
	usersA, usersB []usersv1.User
}

func users(prefix string, n int) []usersv1.User {
	out := make([]usersv1.User, n)
	for i := range out {
		k := fmt.Sprintf("%s-%d", prefix, i)
		out[i] = usersv1.User{Key: k, Email: k + "@example.com", FirstName: "User", LastName: k}
	}
	return out
}

func emails(us []usersv1.User) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Email
	}
	return out
}

func hubspotEmails(em *hsemu.Emulator) []string {
	var out []string
	for _, u := range em.Users() {
		out = append(out, u.Properties[hubspot.PropEmail])
	}
	return out
}

func newHubSpot() *hsemu.Emulator {
	em := hsemu.New(hsemu.Options{Tokens: map[string][]string{hubspotToken: hubspot.DefaultScopes}, RateLimit: -1})
	em.Start()
	DeferCleanup(em.Close)
	return em
}

func create(obj client.Object) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, obj)).To(Succeed(), "creating %T %s", obj, obj.GetName())
}

// hubspotSpec is a HubSpot provider's spec for em, with its token in the
// Secret secret (of namespace ns on a ClusterUserProvider).
func hubspotSpec(em *hsemu.Emulator, secret, ns string) usersv1.ProviderSpec {
	return usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot, Endpoint: em.URL(), AllowInsecureHTTP: true,
		CredentialsRef: usersv1.SecretKeyReference{Name: secret, Key: "token", Namespace: ns}}
}

// applyWorkload creates the workload in namespaces a and b (which it
// creates), as the admin.
func applyWorkload(a, b string) *workload {
	GinkgoHelper()
	w := &workload{a: a, b: b, cluster: b + "-hubspot", hubspot: newHubSpot(), shared: newHubSpot(),
		usersA: users(a, 3), usersB: users(b, 2)}
	w.propel = propemu.New(propemu.Options{Clients: map[string]string{propelClientID: propelClientSecret}})
	w.propel.Start()
	DeferCleanup(w.propel.Close)
	ensureNamespace(a)
	ensureNamespace(b)

	create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: a, Name: "hubspot"},
		Data: map[string][]byte{"token": []byte(hubspotToken)}})
	create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: a, Name: "propel-oauth"},
		Data: map[string][]byte{"clientId": []byte(propelClientID), "clientSecret": []byte(propelClientSecret)}})
	create(&usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: a, Name: "hubspot"},
		Spec: hubspotSpec(w.hubspot, "hubspot", "")})
	create(&usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: a, Name: "propel"},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderPropel, Endpoint: w.propel.URL() + "/v2", AllowInsecureHTTP: true,
			CredentialsRef: usersv1.SecretKeyReference{Name: "propel-oauth", Key: "clientSecret"},
			Propel:         &usersv1.PropelOptions{Source: propelSource}}})
	create(&usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: a, Name: syncName},
		Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{
			{Kind: usersv1.KindUserProvider, Name: "hubspot"}, {Kind: usersv1.KindUserProvider, Name: "propel"}},
			Users: w.usersA}})

	create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: b, Name: "shared-hubspot"},
		Data: map[string][]byte{"token": []byte(hubspotToken)}})
	create(&usersv1.ClusterUserProvider{ObjectMeta: metav1.ObjectMeta{Name: w.cluster},
		Spec: usersv1.ClusterUserProviderSpec{ProviderSpec: hubspotSpec(w.shared, "shared-hubspot", b),
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: b}}}})
	create(&usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: b, Name: syncName},
		Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindClusterUserProvider, Name: w.cluster}},
			Users: w.usersB}})
	return w
}

// syncedIn checks that the UserSync of ns is Ready for its current
// generation with want users, every record Synced.
func syncedIn(g Gomega, ns string, want int) {
	var us usersv1.UserSync
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: syncName}, &us)).To(Succeed())
	c := meta.FindStatusCondition(us.Status.Conditions, usersv1.ConditionReady)
	g.Expect(c).NotTo(BeNil(), "%s/%s has no Ready condition", ns, syncName)
	g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "%s/%s: %s %s", ns, syncName, c.Reason, c.Message)
	g.Expect(c.ObservedGeneration).To(Equal(us.Generation))
	g.Expect(us.Status.Summary.Desired).To(BeEquivalentTo(want))
	g.Expect(us.Status.Summary.Synced).To(BeEquivalentTo(want))
	for _, r := range us.Status.Results {
		g.Expect(r.State).To(Equal(usersv1.StateSynced), "%s/%s record %s at %s", ns, syncName, r.Key, r.Provider)
	}
}

func providerReady(g Gomega, conds []metav1.Condition, what string) {
	c := meta.FindStatusCondition(conds, usersv1.ConditionReady)
	g.Expect(c).NotTo(BeNil(), "%s has no Ready condition", what)
	g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "%s: %s %s", what, c.Reason, c.Message)
}

// converged checks what the operator wrote where an admin looks (the
// UserSyncs' and providers' status, the events) and what the vendors hold.
func (w *workload) converged(g Gomega) {
	syncedIn(g, w.a, 2*len(w.usersA))
	syncedIn(g, w.b, len(w.usersB))
	for _, name := range []string{"hubspot", "propel"} {
		var p usersv1.UserProvider
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: w.a, Name: name}, &p)).To(Succeed())
		providerReady(g, p.Status.Conditions, "UserProvider "+w.a+"/"+name)
	}
	var cp usersv1.ClusterUserProvider
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: w.cluster}, &cp)).To(Succeed())
	providerReady(g, cp.Status.Conditions, "ClusterUserProvider "+w.cluster)

	g.Expect(hubspotEmails(w.hubspot)).To(ConsistOf(emails(w.usersA)), "the users at HubSpot")
	g.Expect(w.propel.Users()).To(HaveLen(len(w.usersA)), "the users at Propel")
	for _, u := range w.usersA {
		_, ok := w.propel.UserBySourceID(propelSource, u.Key)
		g.Expect(ok).To(BeTrue(), "Propel does not hold %s", u.Key)
	}
	g.Expect(hubspotEmails(w.shared)).To(ConsistOf(emails(w.usersB)), "the users at the ClusterUserProvider's HubSpot")

	for _, ns := range []string{w.a, w.b} {
		var events eventsv1.EventList
		g.Expect(k8s.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
		g.Expect(events.Items).To(ContainElement(SatisfyAll(
			HaveField("Reason", usersv1.ReasonSynced), HaveField("Regarding.Name", syncName))),
			"no %s event about UserSync %s/%s", usersv1.ReasonSynced, ns, syncName)
	}
}

// deleteSyncs deletes the workload's UserSyncs and waits until the operator
// has released their finalizers (under the default deletionPolicy Orphan,
// the users stay at the vendors).
func (w *workload) deleteSyncs() {
	GinkgoHelper()
	for _, ns := range []string{w.a, w.b} {
		Expect(k8s.Delete(ctx, &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: syncName}})).To(Succeed())
	}
	Eventually(func(g Gomega) {
		for _, ns := range []string{w.a, w.b} {
			err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: syncName}, &usersv1.UserSync{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "UserSync %s/%s is still there: %v", ns, syncName, err)
		}
	}, 20*time.Second, 200*time.Millisecond).Should(Succeed())
}

// remove deletes, as the admin, whatever of the workload is left, so that
// the operator of a later spec does not find it: the UserSyncs (their
// finalizers dropped), the providers and the Secrets. envtest runs no
// namespace controller, so the namespaces themselves would never empty.
func (w *workload) remove() {
	GinkgoHelper()
	for _, ns := range []string{w.a, w.b} {
		var us usersv1.UserSync
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: syncName}, &us); err == nil {
			patch := client.MergeFrom(us.DeepCopy())
			us.Finalizers = nil
			Expect(k8s.Patch(ctx, &us, patch)).To(Succeed())
			Expect(client.IgnoreNotFound(k8s.Delete(ctx, &us))).To(Succeed())
		}
		Expect(k8s.DeleteAllOf(ctx, &usersv1.UserProvider{}, client.InNamespace(ns))).To(Succeed())
		Expect(k8s.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns))).To(Succeed())
	}
	Expect(client.IgnoreNotFound(k8s.Delete(ctx, &usersv1.ClusterUserProvider{ObjectMeta: metav1.ObjectMeta{Name: w.cluster}}))).To(Succeed())
}
