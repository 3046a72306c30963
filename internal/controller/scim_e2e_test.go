package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/emulation"
	scimemu "github.com/usersync/usersync-operator/internal/providers/scim/emulator"
)

const scimToken = "scim-e2e-token"

// scimRate is the provider's spec.rateLimit and the emulator's own limit,
// per second: the operator must keep within it without being throttled.
const scimRate = 100

// scimProvider starts a SCIM emulator with a profile and a UserProvider of
// type SCIM pointing at it.
func scimProvider(ns string, profile scimemu.Profile, opts *usersv1.SCIMOptions) *scimemu.Emulator {
	em := scimemu.New(scimemu.Options{Profile: profile, Tokens: []string{scimToken}, RateLimit: scimRate})
	em.Start()
	DeferCleanup(em.Close)
	newSecret(ns, "scim-token", "token", scimToken)
	p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scim"},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderSCIM, Endpoint: em.URL(), AllowInsecureHTTP: true, SCIM: opts,
			RateLimit:      &usersv1.RateLimit{Requests: scimRate, Period: metav1.Duration{Duration: time.Second}},
			CredentialsRef: usersv1.SecretKeyReference{Name: "scim-token", Key: "token"}}}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	return em
}

// scimCapabilities returns the provider's status.capabilities.
func scimCapabilities(ns string) func() *usersv1.ProviderCapabilities {
	return func() *usersv1.ProviderCapabilities {
		p := &usersv1.UserProvider{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "scim"}, p); err != nil {
			return nil
		}
		return p.Status.Capabilities
	}
}

// summary returns a UserSync's status.summary once it describes its
// generation.
func summary(ns, name string) func() usersv1.Summary {
	return func() usersv1.Summary {
		us := getSync(ns, name)
		if us.Status.ObservedGeneration != us.Generation {
			return usersv1.Summary{}
		}
		return us.Status.Summary
	}
}

var _ = Describe("SCIM end to end", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	// SCIM users carry no custom attributes unless an extension schema is
	// set: these users declare only core fields.
	coreUsers := func(n int, prefix string) []usersv1.User {
		us := users(n, prefix)
		for i := range us {
			us[i].Attributes = map[string]usersv1.AttributeValue{"title": usersv1.StringValue("Engineer")}
		}
		return us
	}

	DescribeTable("creates 250 users with the calls the server's profile dictates, within the rate limit",
		func(profile scimemu.Profile, bulkCalls, posts int) {
			em := scimProvider(ns, profile, nil)
			newSync(ns, "a", coreUsers(250, "s"), ref("scim"))
			newSync(ns, "b", nil, ref("scim"))
			Eventually(readyStatus(ns, "a"), 60*time.Second).Should(Equal("True/Synced"))
			Expect(em.Calls(scimemu.EndpointBulk)).To(Equal(bulkCalls), "Bulk inputs %v", em.Inputs(scimemu.EndpointBulk))
			Expect(em.Calls(scimemu.EndpointCreate)).To(Equal(posts))
			Expect(em.Users()).To(HaveLen(250))
			Expect(em.Throttled()).To(BeZero(), "the provider's rate limit kept within the server's")
			Expect(em.MaxInWindow()).To(BeNumerically("<=", scimRate))
			for _, l := range em.Log() {
				Expect(l.Fault).To(BeNil())
			}
			// status.capabilities says what the ServiceProviderConfig offers.
			Eventually(scimCapabilities(ns), 10*time.Second).Should(Equal(&usersv1.ProviderCapabilities{
				Patch: profile.Patch, ETag: profile.ETag,
				Bulk: usersv1.BulkCapability{Supported: profile.Bulk, MaxOperations: int32(profile.MaxOperations),
					MaxPayloadSize: int64(profile.MaxPayloadSize)},
				Filter: usersv1.FilterCapability{Supported: true, MaxResults: int32(profile.MaxResults)}}))
		},
		Entry("full: ⌈250/100⌉ = 3 Bulk calls", scimemu.Full, 3, 0),
		// tight: maxPayloadSize 16,384 bytes. These users' creates encode to
		// 337-349 bytes (bulkId and all) in an envelope of 81 bytes, so 46
		// to 48 fit a request and 100 (34 KB) never do: ⌈250/46⌉ =
		// ⌈250/48⌉ = 6 Bulk calls, none refused with 413.
		Entry("tight: 6 Bulk calls of at most 16 KiB", scimemu.Tight, 6, 0),
		Entry("nobulk: 250 POSTs", scimemu.NoBulk, 0, 250),
		Entry("aws: 250 POSTs", scimemu.AWS, 0, 250),
	)

	DescribeTable("fails 5 users the server rejects, alone, with the server's detail",
		func(profile scimemu.Profile) {
			scimProvider(ns, profile, nil)
			us := coreUsers(20, "v")
			for i := 0; i < 20; i += 4 {
				us[i].Attributes["profileUrl"] = usersv1.StringValue("not a url")
			}
			newSync(ns, "a", us, ref("scim"))
			Eventually(summary(ns, "a"), 60*time.Second).Should(Equal(usersv1.Summary{Desired: 20, Synced: 15, Failed: 5}))
			got := getSync(ns, "a")
			for i := range us {
				r := resultOf(got, "UserProvider/scim", us[i].Key)
				Expect(r).NotTo(BeNil())
				if i%4 == 0 {
					Expect(r.State).To(Equal(usersv1.StateFailed), us[i].Key)
					Expect(r.Message).To(And(ContainSubstring(`profileUrl "not a url" is not an absolute URI`),
						ContainSubstring("invalidValue")), us[i].Key)
				} else {
					Expect(r.State).To(Equal(usersv1.StateSynced), us[i].Key)
				}
			}
		},
		Entry("full (in Bulk)", scimemu.Full),
		Entry("aws (one POST each)", scimemu.AWS),
	)

	It("writes a roster's attributes to the core, the enterprise extension and extensionSchema, by the provider's mapping", func() {
		const ext = "urn:example:params:scim:schemas:usersync:1.0:User"
		em := scimProvider(ns, scimemu.Full, &usersv1.SCIMOptions{ExtensionSchema: ext})
		updateProvider(ns, "scim", func(s *usersv1.ProviderSpec) {
			s.AttributeMapping = []usersv1.AttributeMapping{
				{Attribute: "team", To: "enterprise.department"},
				{Attribute: "role", To: "title"},
				{Expression: "user.key.upperAscii()", To: "enterprise.employeeNumber"},
			}
		})
		us := coreUsers(20, "x")
		for i := range us {
			us[i].Attributes = map[string]usersv1.AttributeValue{"team": usersv1.StringValue("core"),
				"role": usersv1.StringValue("Engineer"), "costCode": usersv1.NumberValue(42)}
		}
		newSync(ns, "a", us, ref("scim"))
		Eventually(readyStatus(ns, "a"), 60*time.Second).Should(Equal("True/Synced"))
		u, ok := em.UserByExternalID("x3")
		Expect(ok).To(BeTrue())
		Expect(u.Resource).To(HaveKeyWithValue("title", "Engineer"))
		Expect(u.Resource).To(HaveKeyWithValue("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
			And(HaveKeyWithValue("department", "core"), HaveKeyWithValue("employeeNumber", "X3"))))
		Expect(u.Resource).To(HaveKeyWithValue(ext, HaveKeyWithValue("costCode", 42.0)), "an unmapped attribute goes to extensionSchema")
		Expect(u.Resource).NotTo(HaveKey("team"))
	})

	It("creates no duplicate when a Bulk answer is lost: the creates are looked up, not sent again", func() {
		em := scimProvider(ns, scimemu.Full, nil)
		em.Inject(scimemu.EndpointBulk, emulation.Fault{Status: 504, AfterApply: true})
		newSync(ns, "a", coreUsers(50, "l"), ref("scim"))
		Eventually(readyStatus(ns, "a"), 60*time.Second).Should(Equal("True/Synced"))
		Expect(em.Users()).To(HaveLen(50), "a user was created twice")
		Expect(em.Calls(scimemu.EndpointLookup)).To(Equal(50), "each uncertain create looked up once by externalId")
		// The lost request, then one Bulk of the adopted users' PATCHes; the
		// lost request was never sent again.
		Expect(em.Inputs(scimemu.EndpointBulk)).To(Equal([]int{50, 50}))
		Expect(em.Calls(scimemu.EndpointBulk)).To(Equal(2))
		for _, r := range getSync(ns, "a").Status.Results {
			Expect(r.ExternalID).NotTo(BeEmpty(), r.Key)
		}
	})

	It("deprovisions with DELETE under deprovision Delete (in Bulk)", func() {
		em := scimProvider(ns, scimemu.Full, &usersv1.SCIMOptions{Deprovision: "Delete"})
		newSync(ns, "a", coreUsers(50, "d"), ref("scim"))
		Eventually(readyStatus(ns, "a"), 60*time.Second).Should(Equal("True/Synced"))
		updateSync(ns, "a", func(us *usersv1.UserSync) {
			us.Spec.DeletionPolicy = usersv1.DeletionPolicyDelete
			us.Spec.Users = us.Spec.Users[10:]
		})
		Eventually(readyStatus(ns, "a"), 30*time.Second).Should(Equal("True/Synced"))
		Eventually(em.Users, 10*time.Second).Should(HaveLen(40))
		for i := range 10 {
			_, ok := em.UserByExternalID("d" + itoa(i))
			Expect(ok).To(BeFalse())
		}
	})

	It("deactivates a removed user under deprovision Deactivate (the default), one PATCH each", func() {
		em := scimProvider(ns, scimemu.AWS, nil)
		newSync(ns, "a", coreUsers(50, "s"), ref("scim"))
		Eventually(readyStatus(ns, "a"), 60*time.Second).Should(Equal("True/Synced"))
		Expect(em.Calls(scimemu.EndpointCreate)).To(Equal(50))
		updateSync(ns, "a", func(us *usersv1.UserSync) {
			us.Spec.DeletionPolicy = usersv1.DeletionPolicyDelete
			us.Spec.Users = us.Spec.Users[10:]
		})
		Eventually(readyStatus(ns, "a"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(em.Calls(scimemu.EndpointDelete)).To(BeZero())
		Expect(em.Calls(scimemu.EndpointPatch)).To(Equal(10))
		Expect(em.Users()).To(HaveLen(50))
		inactive := 0
		for _, u := range em.Users() {
			if !u.Active {
				inactive++
			}
		}
		Expect(inactive).To(Equal(10))
	})
})
