package controller

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// fakeProvider creates a UserProvider backed by a fresh fake vendor.
func fakeProvider(ns, name string) *fakeVendor {
	endpoint := fmt.Sprintf("https://%s.%s.fake.invalid", name, ns)
	// The vendor exists with its token before the operator can see the
	// provider: a client built first would find a vendor without one.
	v := fakes.vendor(endpoint, "good-token")
	newSecret(ns, name+"-creds", "token", "good-token")
	p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderPropel, Endpoint: endpoint,
			CredentialsRef: usersv1.SecretKeyReference{Name: name + "-creds", Key: "token"}}}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	return v
}

func newSync(ns, name string, us []usersv1.User, refs ...usersv1.ProviderRef) *usersv1.UserSync {
	s := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: usersv1.UserSyncSpec{ProviderRefs: refs, Users: us}}
	Expect(k8s.Create(ctx, s)).To(Succeed())
	return s
}

func ref(name string) usersv1.ProviderRef {
	return usersv1.ProviderRef{Kind: usersv1.KindUserProvider, Name: name}
}

// updateSync re-reads the UserSync and applies fn until the update lands.
func updateSync(ns, name string, fn func(*usersv1.UserSync)) {
	Eventually(func() error {
		us := getSync(ns, name)
		fn(us)
		return k8s.Update(ctx, us)
	}).Should(Succeed())
}

func resultOf(us *usersv1.UserSync, provider, key string) *usersv1.RecordResult {
	for i := range us.Status.Results {
		if us.Status.Results[i].Provider == provider && us.Status.Results[i].Key == key {
			return &us.Status.Results[i]
		}
	}
	return nil
}

var _ = Describe("Sync engine", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	It("syncs, reports every record, and writes nothing when nothing changed", func() {
		v := fakeProvider(ns, "p")
		newSync(ns, "team", users(30, "u"), ref("p"))
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("True/Synced"))
		us := getSync(ns, "team")
		Expect(us.Status.Summary).To(Equal(usersv1.Summary{Desired: 30, Synced: 30}))
		Expect(us.Status.ProviderNames).To(Equal("p"))
		Expect(us.Status.Results).To(HaveLen(30))
		for _, r := range us.Status.Results {
			Expect(r.State).To(Equal(usersv1.StateSynced))
			Expect(r.ExternalID).NotTo(BeEmpty())
			Expect(r.Hash).To(HaveLen(16))
		}
		// Under deletionPolicy Orphan (the default) nothing is to be done
		// when it goes: no finalizer. Under Delete it gets one.
		Expect(us.Finalizers).To(BeEmpty())
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.DeletionPolicy = usersv1.DeletionPolicyDelete })
		Eventually(func() []string { return getSync(ns, "team").Finalizers }, 10*time.Second).Should(ContainElement(usersv1.Finalizer))
		Eventually(readyStatus(ns, "team"), 10*time.Second).Should(Equal("True/Synced"))
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.DeletionPolicy = usersv1.DeletionPolicyOrphan })
		Eventually(func() []string { return getSync(ns, "team").Finalizers }, 10*time.Second).Should(BeEmpty())
		Eventually(readyStatus(ns, "team"), 10*time.Second).Should(Equal("True/Synced"))
		us = getSync(ns, "team")
		calls, n := v.snapshot()
		Expect(n).To(Equal(30))
		rv := us.ResourceVersion
		// Two resyncs later: no vendor write, no status write.
		Consistently(func() int { c, _ := v.snapshot(); return len(c) }, 5*time.Second, time.Second).Should(Equal(len(calls)))
		Expect(getSync(ns, "team").ResourceVersion).To(Equal(rv))
	})

	It("marks a rejected record Failed with the vendor's message while the rest sync, and keeps it until its spec changes", func() {
		v := fakeProvider(ns, "p")
		v.set(func(v *fakeVendor) { v.reject["u3"] = "Property values were not valid: hs_job_title" })
		newSync(ns, "team", users(10, "u"), ref("p"))
		Eventually(func() usersv1.Summary { return getSync(ns, "team").Status.Summary }, 20*time.Second).
			Should(Equal(usersv1.Summary{Desired: 10, Synced: 9, Failed: 1}))
		us := getSync(ns, "team")
		r := resultOf(us, "UserProvider/p", "u3")
		Expect(r.State).To(Equal(usersv1.StateFailed))
		Expect(r.Reason).To(Equal("VALIDATION_ERROR"))
		Expect(r.Message).To(Equal("Property values were not valid: hs_job_title"))
		Expect(condition(us.Status.Conditions, usersv1.ConditionDegraded).Status).To(Equal(metav1.ConditionTrue))
		Expect(condition(us.Status.Conditions, usersv1.ConditionReady).Reason).To(Equal(usersv1.ReasonFailed))
		before, _ := v.snapshot()
		Consistently(func() int { c, _ := v.snapshot(); return len(c) }, 3*time.Second, time.Second).Should(Equal(len(before)))

		v.set(func(v *fakeVendor) { delete(v.reject, "u3") })
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.Users[3].LastName = "Fixed" })
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("True/Synced"))
	})

	It("fails a record whose attribute names the API server cannot check, without blocking the others", func() {
		fakeProvider(ns, "p")
		us := users(3, "u")
		us[1].Attributes = map[string]usersv1.AttributeValue{"bad name": usersv1.StringValue("x")}
		newSync(ns, "team", us, ref("p"))
		Eventually(func() usersv1.Summary { return getSync(ns, "team").Status.Summary }, 20*time.Second).
			Should(Equal(usersv1.Summary{Desired: 3, Synced: 2, Failed: 1}))
		r := resultOf(getSync(ns, "team"), "UserProvider/p", "u1")
		Expect(r.Reason).To(Equal("InvalidSpec"))
		Expect(r.Message).To(ContainSubstring(`attribute name "bad name" is invalid`))
	})

	It("lets the older UserSync keep an identity and fails the newer one's record with reason Conflict", func() {
		fakeProvider(ns, "p")
		old := users(2, "a")
		newSync(ns, "old", old, ref("p"))
		Eventually(readyStatus(ns, "old"), 20*time.Second).Should(Equal("True/Synced"))
		time.Sleep(1100 * time.Millisecond) // creationTimestamp has a one-second resolution
		dup := []usersv1.User{{Key: "other", Email: old[0].Email}, {Key: "fine", Email: "fine@example.com"}}
		newSync(ns, "new", dup, ref("p"))
		Eventually(func() *usersv1.RecordResult { return resultOf(getSync(ns, "new"), "UserProvider/p", "other") }, 20*time.Second).
			Should(And(Not(BeNil()), HaveField("State", usersv1.StateFailed), HaveField("Reason", "Conflict")))
		r := resultOf(getSync(ns, "new"), "UserProvider/p", "other")
		Expect(r.Message).To(ContainSubstring("already declared by UserSync " + ns + "/old"))
		Expect(resultOf(getSync(ns, "new"), "UserProvider/p", "fine").State).To(Equal(usersv1.StateSynced))
		Expect(readyStatus(ns, "old")()).To(Equal("True/Synced"))
	})

	It("holds every write while suspended and says so", func() {
		v := fakeProvider(ns, "p")
		s := newSync(ns, "team", users(5, "u"), ref("p"))
		_ = s
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.Suspend = true })
		Eventually(func() string {
			c := condition(getSync(ns, "team").Status.Conditions, usersv1.ConditionSuspended)
			if c == nil {
				return ""
			}
			return string(c.Status)
		}, 20*time.Second).Should(Equal("True"))
		before, _ := v.snapshot()
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.Users[0].LastName = "Changed" })
		Eventually(func() string {
			r := resultOf(getSync(ns, "team"), "UserProvider/p", "u0")
			if r == nil {
				return ""
			}
			return string(r.State) + "/" + r.Reason
		}, 20*time.Second).Should(Equal("Pending/Suspended"))
		Consistently(func() int { c, _ := v.snapshot(); return len(c) }, 3*time.Second, time.Second).Should(Equal(len(before)))
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.Suspend = false })
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("True/Synced"))
		Expect(condition(getSync(ns, "team").Status.Conditions, usersv1.ConditionSuspended)).To(BeNil())
	})

	It("refuses a provider of another namespace and one whose namespaceSelector does not admit the UserSync's", func() {
		other := newNamespace(nil)
		fakeProvider(other, "theirs")
		newSync(ns, "team", users(2, "u"), ref("theirs"))
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("False/ProviderNotFound"))
		c := condition(getSync(ns, "team").Status.Conditions, usersv1.ConditionReady)
		Expect(c.Message).To(ContainSubstring(`UserProvider "theirs" not found in namespace ` + ns))

		newSecret(ns, "cluster-creds", "token", "good-token")
		cup := &usersv1.ClusterUserProvider{ObjectMeta: metav1.ObjectMeta{Name: "shared-" + ns},
			Spec: usersv1.ClusterUserProviderSpec{
				ProviderSpec: usersv1.ProviderSpec{Type: usersv1.ProviderUserCom, Endpoint: "https://shared.fake.invalid/" + ns,
					CredentialsRef: usersv1.SecretKeyReference{Name: "cluster-creds", Key: "token", Namespace: ns}},
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"usersync": "allowed"}}}}
		fakes.vendor("https://shared.fake.invalid/"+ns, "good-token") // before the operator sees the provider
		Expect(k8s.Create(ctx, cup)).To(Succeed())
		newSync(ns, "shared", users(2, "u"), usersv1.ProviderRef{Kind: usersv1.KindClusterUserProvider, Name: cup.Name})
		Eventually(readyStatus(ns, "shared"), 20*time.Second).Should(Equal("False/NotPermitted"))
		Expect(condition(getSync(ns, "shared").Status.Conditions, usersv1.ConditionReady).Message).
			To(ContainSubstring("does not admit namespace " + ns))

		// Labelling the namespace admits it without any other change.
		nsObj := &corev1.Namespace{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: ns}, nsObj)).To(Succeed())
		nsObj.Labels["usersync"] = "allowed"
		Expect(k8s.Update(ctx, nsObj)).To(Succeed())
		Eventually(readyStatus(ns, "shared"), 20*time.Second).Should(Equal("True/Synced"))
		Expect(getSync(ns, "shared").Status.ProviderNames).To(Equal("ClusterUserProvider/" + cup.Name))
	})

	It("reports refused credentials on the provider, keeps records Pending, and recovers when the Secret is fixed", func() {
		v := fakeProvider(ns, "p")
		sec := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "p-creds"}, sec)).To(Succeed())
		sec.Data["token"] = []byte("wrong-token")
		Expect(k8s.Update(ctx, sec)).To(Succeed())
		newSync(ns, "team", users(4, "u"), ref("p"))
		Eventually(func() string {
			p := &usersv1.UserProvider{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "p"}, p)).To(Succeed())
			c := condition(p.Status.Conditions, usersv1.ConditionReady)
			if c == nil {
				return ""
			}
			return string(c.Status) + "/" + c.Reason
		}, 20*time.Second).Should(Equal("False/Unauthorized"))
		Eventually(func() string {
			r := resultOf(getSync(ns, "team"), "UserProvider/p", "u0")
			if r == nil {
				return ""
			}
			return string(r.State) + "/" + r.Reason
		}, 20*time.Second).Should(Equal("Pending/ProviderNotReady"))
		_, n := v.snapshot()
		Expect(n).To(BeZero())

		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "p-creds"}, sec)).To(Succeed())
		sec.Data["token"] = []byte("good-token")
		Expect(k8s.Update(ctx, sec)).To(Succeed())
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("True/Synced"))
	})

	It("keeps both providers' records of one UserSync, and one provider's outage leaves the other's records alone", func() {
		a, b := fakeProvider(ns, "a"), fakeProvider(ns, "b")
		b.set(func(v *fakeVendor) { v.down = true })
		newSync(ns, "team", users(40, "u"), ref("a"), ref("b"))
		Eventually(func() string {
			r := resultOf(getSync(ns, "team"), "UserProvider/b", "u7")
			if r == nil {
				return ""
			}
			return r.Reason
		}, 20*time.Second).Should(Equal("ServerError"))
		Eventually(func() usersv1.Summary { return getSync(ns, "team").Status.Summary }, 20*time.Second).
			Should(Equal(usersv1.Summary{Desired: 80, Synced: 40, Pending: 40}))
		us := getSync(ns, "team")
		Expect(us.Status.Results).To(HaveLen(80))
		// Every provider, for the Providers column (not only the first ref).
		Expect(us.Status.ProviderNames).To(Equal("a,b"))
		Expect(resultOf(us, "UserProvider/b", "u7").Reason).To(Equal("ServerError"))
		Expect(resultOf(us, "UserProvider/b", "u7").Attempts).To(BeNumerically(">=", 1))
		_, na := a.snapshot()
		Expect(na).To(Equal(40))

		b.set(func(v *fakeVendor) { v.down = false })
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(getSync(ns, "team").Status.Results).To(HaveLen(80))
	})

	It("deletes removed users under Delete, forgets them under Orphan, and releases a deleted UserSync", func() {
		v := fakeProvider(ns, "p")
		newSync(ns, "del", users(6, "d"), ref("p"))
		newSync(ns, "orphan", users(3, "o"), ref("p"))
		updateSync(ns, "del", func(us *usersv1.UserSync) { us.Spec.DeletionPolicy = usersv1.DeletionPolicyDelete })
		Eventually(readyStatus(ns, "del"), 20*time.Second).Should(Equal("True/Synced"))
		Eventually(readyStatus(ns, "orphan"), 20*time.Second).Should(Equal("True/Synced"))
		_, n := v.snapshot()
		Expect(n).To(Equal(9))

		updateSync(ns, "del", func(us *usersv1.UserSync) { us.Spec.Users = us.Spec.Users[:4] })
		updateSync(ns, "orphan", func(us *usersv1.UserSync) { us.Spec.Users = us.Spec.Users[:1] })
		Eventually(readyStatus(ns, "del"), 20*time.Second).Should(Equal("True/Synced"))
		Eventually(readyStatus(ns, "orphan"), 20*time.Second).Should(Equal("True/Synced"))
		Expect(getSync(ns, "del").Status.Results).To(HaveLen(4))
		Expect(getSync(ns, "orphan").Status.Results).To(HaveLen(1))
		_, n = v.snapshot()
		Expect(n).To(Equal(7), "2 deleted under Delete, 2 orphaned")

		// The vendor is down: the deleted UserSync waits and says why.
		v.set(func(v *fakeVendor) { v.down = true })
		Expect(k8s.Delete(ctx, getSync(ns, "del"))).To(Succeed())
		Eventually(func() string {
			e := currentEntry(getSync(ns, "del"), "UserProvider/p")
			if e == nil {
				return ""
			}
			return e.Reason + ": " + e.Message
		}, 20*time.Second).Should(ContainSubstring("Deleting: 4 users wait to be deleted"))
		v.set(func(v *fakeVendor) { v.down = false })
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "del"}, &usersv1.UserSync{}))
		}, 30*time.Second).Should(BeTrue())
		_, n = v.snapshot()
		Expect(n).To(Equal(3), "the deleted UserSync's 4 users are gone; the orphaned ones stay")

		// Orphan: deleting writes nothing at the vendor.
		before, _ := v.snapshot()
		Expect(k8s.Delete(ctx, getSync(ns, "orphan"))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orphan"}, &usersv1.UserSync{}))
		}, 20*time.Second).Should(BeTrue())
		after, n := v.snapshot()
		Expect(n).To(Equal(3))
		Expect(after).To(HaveLen(len(before)))
	})
})
