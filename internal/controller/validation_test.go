package controller

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// create applies a manifest (with the namespace set) and returns the API
// server's error.
func createManifest(ns, manifest string) error {
	obj := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal([]byte(manifest), &obj.Object)).To(Succeed())
	if obj.GetKind() != "ClusterUserProvider" {
		obj.SetNamespace(ns)
	}
	return k8s.Create(ctx, obj)
}

func userList(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString("  - key: u" + itoa(i) + "\n")
	}
	return b.String()
}

var _ = Describe("CRD validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	const syncHead = "apiVersion: users.usersync.io/v1alpha1\nkind: UserSync\nmetadata: {name: bad}\nspec:\n"
	const provHead = "apiVersion: users.usersync.io/v1alpha1\nkind: UserProvider\nmetadata: {name: bad}\nspec:\n"
	const refs = "  providerRefs: [{name: hubspot}]\n"

	DescribeTable("rejects with a message naming the field",
		func(manifest string, wants ...string) {
			err := createManifest(ns, manifest)
			Expect(err).To(HaveOccurred(), "the API server accepted:\n%s", manifest)
			for _, w := range wants {
				Expect(err.Error()).To(ContainSubstring(w))
			}
		},
		Entry("duplicate user keys", syncHead+refs+"  users:\n  - key: alice\n  - key: alice\n",
			`spec.users[1]`, "Duplicate value"),
		Entry("a malformed email", syncHead+refs+"  users:\n  - {key: alice, email: not-an-email}\n",
			"spec.users[0].email"),
		Entry("a non-scalar attribute value", syncHead+refs+"  users:\n  - key: alice\n    attributes: {team: {nested: x}}\n",
			"spec.users[0].attributes.team", "must have at most 0"),
		Entry("an array attribute value", syncHead+refs+"  users:\n  - key: alice\n    attributes: {team: [a, b]}\n",
			"spec.users[0].attributes.team", "must have at most 0"),
		Entry("a long attribute value", syncHead+refs+"  users:\n  - key: alice\n    attributes: {team: "+strings.Repeat("x", 65)+"}\n",
			"spec.users[0].attributes.team", "Too long: may not be more than 64"),
		Entry("too many attributes", syncHead+refs+"  users:\n  - key: alice\n    attributes: {a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1, i: 1}\n",
			"spec.users[0].attributes", "must have at most 8 items"),
		Entry("a key with spaces", syncHead+refs+"  users:\n  - key: \"al ice\"\n", "spec.users[0].key"),
		Entry("a control character in a name", syncHead+refs+"  users:\n  - {key: alice, firstName: \"a\\u0007b\"}\n",
			"spec.users[0].firstName"),
		Entry("a Cyrillic look-alike in a key", syncHead+refs+"  users:\n  - key: \"\u0430lice\"\n", "spec.users[0].key"),
		Entry("a zero-width space in a key", syncHead+refs+"  users:\n  - key: \"al\u200bice\"\n", "spec.users[0].key"),
		Entry("a bidirectional override in a name", syncHead+refs+"  users:\n  - {key: alice, firstName: \"\u202elive\"}\n",
			"spec.users[0].firstName"),
		Entry("a zero-width joiner in an email", syncHead+refs+"  users:\n  - {key: alice, email: \"al\u200dice@example.com\"}\n",
			"spec.users[0].email"),
		Entry("a huge email", syncHead+refs+"  users:\n  - {key: alice, email: \""+strings.Repeat("a", 10000)+"@example.com\"}\n",
			"spec.users[0].email", "Too long"),
		Entry("a key over 63 characters", syncHead+refs+"  users:\n  - key: "+strings.Repeat("k", 64)+"\n", "spec.users[0].key", "Too long"),
		Entry("a provider name over 63 characters", syncHead+"  providerRefs: [{name: "+strings.Repeat("p", 64)+"}]\n",
			"spec.providerRefs[0].name", "Too long"),
		Entry("empty providerRefs", syncHead+"  providerRefs: []\n", "spec.providerRefs", "at least 1 item"),
		Entry("missing providerRefs", syncHead+"  users: [{key: a}]\n", "spec.providerRefs", "Required value"),
		Entry("duplicate providerRefs", syncHead+"  providerRefs: [{name: a}, {name: a}]\n", "spec.providerRefs[1]", "Duplicate value"),
		Entry("too many providerRefs", syncHead+"  providerRefs: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}]\n",
			"spec.providerRefs", "must have at most 4 items"),
		Entry("an unknown provider kind", syncHead+"  providerRefs: [{kind: Secret, name: a}]\n", "spec.providerRefs[0].kind", "Unsupported value"),
		Entry("too many users", syncHead+refs+"  users:\n"+userList(501), "spec.users", "must have at most 500 items"),
		Entry("too many records", syncHead+"  providerRefs: [{name: a}, {name: b}, {name: c}]\n  users:\n"+userList(400),
			"spec.users", "users × providerRefs must be at most 1000 records"),
		Entry("an unknown deletionPolicy", syncHead+refs+"  deletionPolicy: Purge\n", "spec.deletionPolicy", "Unsupported value"),

		Entry("an unknown provider type", provHead+"  type: Salesforce\n  credentialsRef: {name: s, key: token}\n",
			"spec.type", "Unsupported value"),
		Entry("http without allowInsecureHTTP", provHead+"  type: HubSpot\n  endpoint: http://127.0.0.1:8080\n  credentialsRef: {name: s, key: token}\n",
			"spec.endpoint", "plain http:// is refused unless allowInsecureHTTP is true"),
		Entry("an endpoint that is not a URL", provHead+"  type: HubSpot\n  endpoint: not a url\n  credentialsRef: {name: s, key: token}\n",
			"spec.endpoint", "must be an absolute URL"),
		Entry("a relative endpoint", provHead+"  type: HubSpot\n  endpoint: /api\n  credentialsRef: {name: s, key: token}\n",
			"spec.endpoint", "must be an absolute URL"),
		Entry("a HubSpot batch over 100", provHead+"  type: HubSpot\n  batchSize: 101\n  credentialsRef: {name: s, key: token}\n",
			"spec.batchSize", "HubSpot takes at most 100 records per batch call"),
		Entry("a negative batch size", provHead+"  type: Propel\n  batchSize: -1\n  credentialsRef: {name: s, key: token}\n",
			"spec.batchSize", "should be greater than or equal to 1"),
		Entry("a zero rate", provHead+"  type: HubSpot\n  rateLimit: {requests: 0, period: 10s}\n  credentialsRef: {name: s, key: token}\n",
			"spec.rateLimit.requests"),
		Entry("a bad rate period", provHead+"  type: HubSpot\n  rateLimit: {requests: 10, period: often}\n  credentialsRef: {name: s, key: token}\n",
			"spec.rateLimit.period"),
		Entry("missing credentialsRef", provHead+"  type: HubSpot\n", "spec.credentialsRef", "Required value"),
		Entry("a credentials namespace on a UserProvider", provHead+"  type: HubSpot\n  credentialsRef: {name: s, key: token, namespace: other}\n",
			"spec.credentialsRef.namespace is not allowed on a UserProvider"),
		Entry("hubspot options on another type", provHead+"  type: Propel\n  hubspot: {idProperty: x}\n  credentialsRef: {name: s, key: token}\n",
			"spec.hubspot", "only allowed with type HubSpot"),
		Entry("a UserCom provider without an endpoint", provHead+"  type: UserCom\n  credentialsRef: {name: s, key: apiKey}\n",
			"spec.endpoint", "UserCom needs spec.endpoint"),
		Entry("propel options on another type", provHead+"  type: HubSpot\n  propel: {source: crm}\n  credentialsRef: {name: s, key: token}\n",
			"spec.propel", "only allowed with type Propel"),
		Entry("a plain-http Propel token URL", provHead+"  type: Propel\n  propel: {tokenURL: \"http://auth.example.com/token\"}\n  credentialsRef: {name: s, key: clientSecret}\n",
			"spec.propel.tokenURL", "must be an https:// URL"),
		Entry("a mapping entry with attribute and expression", provHead+"  type: HubSpot\n  credentialsRef: {name: s, key: token}\n  attributeMapping: [{attribute: a, expression: \"'x'\", to: b}]\n",
			"spec.attributeMapping[0]", "attribute and expression exclude each other"),
		Entry("a mapping expression without to", provHead+"  type: HubSpot\n  credentialsRef: {name: s, key: token}\n  attributeMapping: [{expression: \"'x'\"}]\n",
			"spec.attributeMapping[0].to", "an expression needs to"),
		Entry("an ignore entry with an expression", provHead+"  type: HubSpot\n  credentialsRef: {name: s, key: token}\n  attributeMapping: [{expression: \"'x'\", to: b, ignore: true}]\n",
			"spec.attributeMapping[0]", "ignore excludes expression and createOnly"),
		Entry("an empty mapping entry", provHead+"  type: HubSpot\n  credentialsRef: {name: s, key: token}\n  attributeMapping: [{createOnly: true}]\n",
			"spec.attributeMapping[0]", "an entry needs attribute"),
		Entry("a mapping target with spaces", provHead+"  type: HubSpot\n  credentialsRef: {name: s, key: token}\n  attributeMapping: [{attribute: a, to: \"job title\"}]\n",
			"spec.attributeMapping[0].to"),
		Entry("an unknown unmappedAttributes", provHead+"  type: HubSpot\n  credentialsRef: {name: s, key: token}\n  unmappedAttributes: Keep\n",
			"spec.unmappedAttributes", "Unsupported value"),
		Entry("a non-scalar default attribute", syncHead+refs+"  defaults:\n    attributes: {team: {nested: x}}\n",
			"spec.defaults.attributes.team"),
		Entry("a Propel source with spaces", provHead+"  type: Propel\n  propel: {source: \"my source\"}\n  credentialsRef: {name: s, key: clientSecret}\n",
			"spec.propel.source", "should match"),
		Entry("a ClusterUserProvider without a credentials namespace",
			"apiVersion: users.usersync.io/v1alpha1\nkind: ClusterUserProvider\nmetadata: {name: bad-cluster}\nspec:\n  type: HubSpot\n  credentialsRef: {name: s, key: token}\n",
			"spec.credentialsRef.namespace is required on a ClusterUserProvider"),
	)

	It("accepts a well-formed UserSync and provider, and defaults them", func() {
		Expect(createManifest(ns, provHead+"  type: HubSpot\n  endpoint: http://127.0.0.1:1\n  allowInsecureHTTP: true\n  credentialsRef: {name: s, key: token}\n")).To(Succeed())
		Expect(createManifest(ns, syncHead+refs+"  users:\n  - key: alice\n    email: alice@example.com\n    attributes: {plan: pro, seats: 3, admin: true, ratio: 0.5}\n")).To(Succeed())
		us := getSync(ns, "bad")
		Expect(string(us.Spec.DeletionPolicy)).To(Equal("Orphan"))
		Expect(string(us.Spec.ProviderRefs[0].Kind)).To(Equal("UserProvider"))
		v, err := usersv1.ScalarOf(us.Spec.Users[0].Attributes["seats"])
		Expect(err).NotTo(HaveOccurred())
		Expect(v).To(Equal(float64(3)))
	})
})
