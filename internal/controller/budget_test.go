package controller

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// etcdLimit is etcd's default maximum request size (--max-request-bytes).
const etcdLimit = 1536 * 1024

var _ = Describe("Status budget", func() {
	It("accepts a UserSync at every enforced limit with every record Failed and carrying the longest message", func() {
		ns := newNamespace(nil)
		pad := func(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }
		refs := make([]usersv1.ProviderRef, 0, 2)
		for i := 0; i < usersv1.MaxRecords/usersv1.MaxUsers; i++ {
			refs = append(refs, usersv1.ProviderRef{Kind: usersv1.KindClusterUserProvider, Name: pad(fmt.Sprintf("p%d", i), 63)})
		}
		us := make([]usersv1.User, usersv1.MaxUsers)
		for i := range us {
			key := pad(fmt.Sprintf("u%d-", i), 63)
			attrs := map[string]usersv1.AttributeValue{}
			for a := 0; a < 8; a++ {
				attrs[pad(fmt.Sprintf("a%d", a), 40)] = usersv1.StringValue(strings.Repeat("v", 64))
			}
			us[i] = usersv1.User{Key: key, Email: pad(fmt.Sprintf("u%d", i), 254-len("@example.com")) + "@example.com",
				FirstName: strings.Repeat("F", 64), LastName: strings.Repeat("L", 64), Attributes: attrs}
		}
		sync := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pad("budget", 63)},
			Spec: usersv1.UserSyncSpec{ProviderRefs: refs, Users: us, Suspend: true}}
		Expect(k8s.Create(ctx, sync)).To(Succeed())

		results := make([]usersv1.RecordResult, 0, usersv1.MaxRecords)
		now := metav1.Now()
		for _, r := range refs {
			for i := range us {
				results = append(results, usersv1.RecordResult{Provider: r.String(), Key: us[i].Key,
					ExternalID: strings.Repeat("9", 64), State: usersv1.StateFailed, Action: pad("Create", 16),
					Reason: pad("VALIDATION_ERROR", 48), Message: strings.Repeat("m", usersv1.MaxMessageLength),
					Attempts: 1 << 30, LastSyncTime: &now, Hash: strings.Repeat("h", 16)})
			}
		}
		// The engine may write the status meanwhile: retry on conflicts.
		Eventually(func() error {
			cur := getSync(ns, sync.Name)
			cur.Status.Results = results
			cur.Status.Summary = usersv1.Summary{Desired: usersv1.MaxRecords, Failed: usersv1.MaxRecords, Drifted: usersv1.MaxRecords}
			// Every provider line at its longest, drift detection's time
			// included, and every condition.
			cur.Status.Providers = nil
			for _, r := range refs {
				cur.Status.Providers = append(cur.Status.Providers, usersv1.ProviderSyncStatus{Provider: r.String(),
					ObservedGeneration: 1 << 40, Reason: pad(usersv1.ReasonDeletionUnsupported, 48),
					Message: strings.Repeat("m", 1024), LastSyncTime: &now, LastVerifiedTime: &now})
			}
			// Ready, Degraded and Drifted may carry a provider line's or a
			// record's message (at most maxConditionMessage); Progressing
			// and Suspended have fixed short forms.
			for t, n := range map[string]int{usersv1.ConditionReady: maxConditionMessage, usersv1.ConditionDegraded: maxConditionMessage,
				usersv1.ConditionDrifted: maxConditionMessage, usersv1.ConditionProgressing: 128, usersv1.ConditionSuspended: 128} {
				meta.SetStatusCondition(&cur.Status.Conditions, metav1.Condition{Type: t, Status: metav1.ConditionFalse,
					Reason: pad("Reason", 48), Message: strings.Repeat("m", n), ObservedGeneration: 1 << 40})
			}
			return k8s.Status().Update(ctx, cur)
		}, 60*time.Second, 100*time.Millisecond).Should(Succeed())

		stored := getSync(ns, sync.Name)
		raw, err := json.Marshal(stored)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("UserSync at the limits: %d bytes stored (etcd limit %d)\n", len(raw), etcdLimit)
		fmt.Printf("status budget: a UserSync at every limit is %d bytes, %.0f%% of etcd's %d\n", len(raw), 100*float64(len(raw))/etcdLimit, etcdLimit)
		// Keep a tenth of the limit free for metadata a user may add.
		Expect(len(raw)).To(BeNumerically("<", etcdLimit*9/10))
	})
})
