// Package chart tests the Helm charts of charts/: it renders them with
// `helm template` under several value sets and checks the result against the
// operator's generated manifests (config/rbac, config/crd/bases) and its
// security and sharding requirements. The helm binary comes from $HELM
// (`make test` and `make helm-test` set it to bin/helm-<version>); without it
// the tests are skipped.
package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

const (
	repoRoot      = "../.."
	operatorChart = repoRoot + "/charts/usersync-operator"
	exampleChart  = repoRoot + "/charts/examples/team-users"
	crdBases      = repoRoot + "/config/crd/bases"
	chartCRDs     = operatorChart + "/crds"
	generatedRole = repoRoot + "/config/rbac/role.yaml"
	electionRole  = repoRoot + "/config/rbac/leader_election_role.yaml"

	release   = "uso"
	releaseNS = "usersync-system"
)

// helmBinary returns $HELM, or skips the test.
func helmBinary(t *testing.T) string {
	t.Helper()
	h := os.Getenv("HELM")
	if h == "" {
		t.Skip("HELM is not set: `make test` (and `make helm-test`) install helm into bin/ and set HELM; " +
			"or run HELM=/path/to/helm go test ./test/chart/...")
	}
	return h
}

// object is one rendered manifest: its kind, name and namespace, and its
// JSON for decoding into a typed struct.
type object struct {
	Kind, Name, Namespace string
	Labels                map[string]string
	JSON                  []byte
}

func (o object) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
}

// decode unmarshals the object strictly: a field the Go type does not know
// (a typo in a template) is an error.
func (o object) decode(t *testing.T, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(o.JSON, into); err != nil {
		t.Fatalf("%s does not decode strictly into %T: %v", o, into, err)
	}
}

// manifests is the output of one `helm template`.
type manifests []object

func (m manifests) ofKind(kind string) manifests {
	var out manifests
	for _, o := range m {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// writeValues writes values as a YAML file and returns its path.
func writeValues(t *testing.T, values map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// helmTemplate renders chart with the given values (nil: the defaults). A
// helm error (schema, `fail`, template) is returned with helm's stderr.
func helmTemplate(t *testing.T, chart, namespace string, values map[string]any) (manifests, error) {
	t.Helper()
	args := []string{"template", release, chart, "--namespace", namespace}
	if values != nil {
		args = append(args, "--values", writeValues(t, values))
	}
	cmd := exec.Command(helmBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return parseManifests(t, stdout.Bytes()), nil
}

func mustTemplate(t *testing.T, chart, namespace string, values map[string]any) manifests {
	t.Helper()
	m, err := helmTemplate(t, chart, namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func parseManifests(t *testing.T, out []byte) manifests {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	var m manifests
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return m
		}
		if err != nil {
			t.Fatalf("reading helm output: %v", err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("helm output is not YAML: %v\n%s", err, doc)
		}
		if string(js) == "null" {
			continue // a document of comments only
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string            `json:"name"`
				Namespace string            `json:"namespace"`
				Labels    map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(js, &head); err != nil {
			t.Fatal(err)
		}
		if head.Kind == "" || head.Metadata.Name == "" {
			t.Fatalf("rendered object without kind or name:\n%s", doc)
		}
		m = append(m, object{Kind: head.Kind, Name: head.Metadata.Name, Namespace: head.Metadata.Namespace,
			Labels: head.Metadata.Labels, JSON: js})
	}
}

// perm is one verb on one resource (resource may carry a subresource:
// "usersyncs/status").
type perm struct{ Group, Resource, Verb string }

func (p perm) String() string {
	g := p.Group
	if g == "" {
		g = "core"
	}
	return fmt.Sprintf("%s %s.%s", p.Verb, p.Resource, g)
}

// expand lists every perm of rules (resourceNames-restricted rules are
// returned by expandNamed instead).
func expand(rules []rbacv1.PolicyRule) []perm {
	var out []perm
	for _, r := range rules {
		if len(r.ResourceNames) > 0 {
			continue
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, perm{g, res, v})
				}
			}
		}
	}
	return out
}

func readRules(t *testing.T, path string) []rbacv1.PolicyRule {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole // a Role has the same rules field
	if err := yaml.Unmarshal(b, &role); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(role.Rules) == 0 {
		t.Fatalf("%s has no rules", path)
	}
	return role.Rules
}

// clusterScoped reports whether resource (of group) is cluster-scoped: core
// namespaces, and the CRDs of config/crd/bases with scope Cluster.
func clusterScoped(t *testing.T) func(p perm) bool {
	t.Helper()
	scoped := map[string]bool{"/namespaces": true}
	files, err := filepath.Glob(filepath.Join(crdBases, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in %s: %v", crdBases, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(b, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if crd.Spec.Scope == apiextensionsv1.ClusterScoped {
			scoped[crd.Spec.Group+"/"+crd.Spec.Names.Plural] = true
		}
	}
	return func(p perm) bool {
		base, _, _ := strings.Cut(p.Resource, "/")
		return scoped[p.Group+"/"+base]
	}
}

// grants is what the operator's ServiceAccount may do, resolved through the
// rendered bindings: cluster-wide (ClusterRoleBindings) and per namespace
// (RoleBindings).
type grants struct {
	cluster     map[perm]bool
	namespaced  map[string]map[perm]bool // namespace -> perms
	roleNS      map[string]map[perm]bool // perms by namespace, of Roles only (for the least-privilege check)
	clusterRole map[string][]rbacv1.PolicyRule
}

func (g grants) allows(namespace string, p perm) bool {
	return g.cluster[p] || g.namespaced[namespace][p]
}

// resolveGrants follows every binding whose subject is the ServiceAccount
// sa/saNS; a binding of another subject or to a role that is not rendered
// fails the test.
func resolveGrants(t *testing.T, m manifests, saNS, sa string) grants {
	t.Helper()
	g := grants{cluster: map[perm]bool{}, namespaced: map[string]map[perm]bool{},
		roleNS: map[string]map[perm]bool{}, clusterRole: map[string][]rbacv1.PolicyRule{}}
	roles := map[string][]rbacv1.PolicyRule{} // "ns/name"
	for _, o := range m.ofKind("ClusterRole") {
		var cr rbacv1.ClusterRole
		o.decode(t, &cr)
		g.clusterRole[cr.Name] = cr.Rules
	}
	for _, o := range m.ofKind("Role") {
		var r rbacv1.Role
		o.decode(t, &r)
		roles[r.Namespace+"/"+r.Name] = r.Rules
	}
	checkSubjects := func(o object, subjects []rbacv1.Subject) {
		if len(subjects) != 1 || subjects[0].Kind != rbacv1.ServiceAccountKind ||
			subjects[0].Name != sa || subjects[0].Namespace != saNS {
			t.Errorf("%s binds %+v, want only the ServiceAccount %s/%s", o, subjects, saNS, sa)
		}
	}
	for _, o := range m.ofKind("ClusterRoleBinding") {
		var b rbacv1.ClusterRoleBinding
		o.decode(t, &b)
		checkSubjects(o, b.Subjects)
		rules, ok := g.clusterRole[b.RoleRef.Name]
		if b.RoleRef.Kind != "ClusterRole" || !ok {
			t.Errorf("%s refers to %s %q, which the chart does not render", o, b.RoleRef.Kind, b.RoleRef.Name)
		}
		for _, p := range expand(rules) {
			g.cluster[p] = true
		}
	}
	for _, o := range m.ofKind("RoleBinding") {
		var b rbacv1.RoleBinding
		o.decode(t, &b)
		checkSubjects(o, b.Subjects)
		var rules []rbacv1.PolicyRule
		var ok bool
		switch b.RoleRef.Kind {
		case "Role":
			rules, ok = roles[b.Namespace+"/"+b.RoleRef.Name]
		case "ClusterRole":
			rules, ok = g.clusterRole[b.RoleRef.Name]
		}
		if !ok {
			t.Errorf("%s refers to %s %q, which the chart does not render in %s", o, b.RoleRef.Kind, b.RoleRef.Name, b.Namespace)
		}
		if g.namespaced[b.Namespace] == nil {
			g.namespaced[b.Namespace] = map[perm]bool{}
		}
		for _, p := range expand(rules) {
			g.namespaced[b.Namespace][p] = true
		}
	}
	for key, rules := range roles {
		ns, _, _ := strings.Cut(key, "/")
		if g.roleNS[ns] == nil {
			g.roleNS[ns] = map[perm]bool{}
		}
		for _, p := range expand(rules) {
			g.roleNS[ns][p] = true
		}
	}
	return g
}

// allRules returns every rule of every rendered Role and ClusterRole, named.
func allRules(t *testing.T, m manifests) map[string][]rbacv1.PolicyRule {
	t.Helper()
	out := map[string][]rbacv1.PolicyRule{}
	for _, o := range m.ofKind("ClusterRole") {
		var cr rbacv1.ClusterRole
		o.decode(t, &cr)
		out[o.String()] = cr.Rules
	}
	for _, o := range m.ofKind("Role") {
		var r rbacv1.Role
		o.decode(t, &r)
		out[o.String()] = r.Rules
	}
	return out
}

type operatorCase struct {
	name   string
	values map[string]any
	// what the case expects
	watchNamespaces  []string
	serviceMonitor   bool
	providerSelector string
	replicas         int32
	extraArgs        []string
}

func operatorCases() []operatorCase {
	return []operatorCase{
		{name: "defaults", replicas: 1},
		{
			name:            "watchNamespaces",
			values:          map[string]any{"watchNamespaces": []string{"a", "b"}},
			watchNamespaces: []string{"a", "b"},
			replicas:        1,
		},
		{
			name:           "serviceMonitor",
			values:         map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]string{"release": "prom"}}},
			serviceMonitor: true,
			replicas:       1,
		},
		{
			name:             "providerSelector",
			values:           map[string]any{"providerSelector": "usersync.io/shard in (a, b),tier!=test"},
			providerSelector: "usersync.io/shard in (a, b),tier!=test",
			replicas:         1,
		},
		{
			name: "everything",
			values: map[string]any{
				"replicaCount":     2,
				"watchNamespaces":  []string{"team-a", "default", "team-c"},
				"providerSelector": "usersync.io/shard=a",
				"serviceMonitor":   map[string]any{"enabled": true},
				"logLevel":         "debug",
				"resyncInterval":   "5m",
				"workers":          8,
				"extraArgs":        []string{"--vendor-timeout=45s"},
			},
			watchNamespaces:  []string{"team-a", "default", "team-c"},
			providerSelector: "usersync.io/shard=a",
			serviceMonitor:   true,
			replicas:         2,
			extraArgs:        []string{"--vendor-timeout=45s"},
		},
	}
}

func TestOperatorChart(t *testing.T) {
	helmBinary(t)
	managerRules := readRules(t, generatedRole)
	electionRules := readRules(t, electionRole)
	isClusterScoped := clusterScoped(t)

	for _, tc := range operatorCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustTemplate(t, operatorChart, releaseNS, tc.values)
			sa := checkServiceAccount(t, m)
			checkDeployment(t, m, tc, sa)
			checkNoWildcardsNoSecretWrites(t, m)
			g := resolveGrants(t, m, releaseNS, sa)
			checkCoverage(t, g, tc, managerRules, electionRules, isClusterScoped)
			checkLeastPrivilege(t, m, g, tc, managerRules, electionRules, isClusterScoped)
			checkNamespacedRoles(t, m, tc)
			checkMetrics(t, m, tc)
		})
	}
}

func checkServiceAccount(t *testing.T, m manifests) string {
	t.Helper()
	sas := m.ofKind("ServiceAccount")
	if len(sas) != 1 || sas[0].Namespace != releaseNS {
		t.Fatalf("want one ServiceAccount in %s, got %v", releaseNS, sas)
	}
	return sas[0].Name
}

func appVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(operatorChart, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %q, %v", c.AppVersion, err)
	}
	return c.AppVersion
}

func checkDeployment(t *testing.T, m manifests, tc operatorCase, sa string) {
	t.Helper()
	deps := m.ofKind("Deployment")
	if len(deps) != 1 {
		t.Fatalf("want one Deployment, got %v", deps)
	}
	var d appsv1.Deployment
	deps[0].decode(t, &d)
	if d.Namespace != releaseNS {
		t.Errorf("Deployment namespace %q, want %q", d.Namespace, releaseNS)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != tc.replicas {
		t.Errorf("replicas %v, want %d", d.Spec.Replicas, tc.replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != sa {
		t.Errorf("serviceAccountName %q, want the chart's ServiceAccount %q", pod.ServiceAccountName, sa)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	if want := "ghcr.io/usersync/usersync-operator:" + appVersion(t); c.Image != want {
		t.Errorf("image %q, want %q", c.Image, want)
	}

	args := c.Args
	want := []string{
		"--leader-elect",
		"--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081",
		"--zap-devel=false",
	}
	logLevel, resync, workers := "info", "10m", "4"
	if v, ok := tc.values["logLevel"]; ok {
		logLevel = fmt.Sprint(v)
	}
	if v, ok := tc.values["resyncInterval"]; ok {
		resync = fmt.Sprint(v)
	}
	if v, ok := tc.values["workers"]; ok {
		workers = fmt.Sprint(v)
	}
	want = append(want, "--zap-log-level="+logLevel, "--resync-interval="+resync, "--workers="+workers)
	if len(tc.watchNamespaces) > 0 {
		want = append(want, "--watch-namespaces="+strings.Join(tc.watchNamespaces, ","))
	}
	if tc.providerSelector != "" {
		want = append(want, "--provider-selector="+tc.providerSelector)
	}
	want = append(want, tc.extraArgs...)
	for _, a := range want {
		if !slices.Contains(args, a) {
			t.Errorf("args %q lack %q", args, a)
		}
	}
	if len(args) != len(want) {
		t.Errorf("args %q, want exactly %q (in any order)", args, want)
	}
	for _, flag := range []string{"--watch-namespaces", "--provider-selector"} {
		n := 0
		for _, a := range args {
			if strings.HasPrefix(a, flag) {
				n++
			}
		}
		if n > 1 {
			t.Errorf("%s given %d times", flag, n)
		}
	}

	// Security.
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccompProfile is not RuntimeDefault")
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		t.Error("pod runs as uid 0")
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container has no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem is not true")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container runAsNonRoot is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation is not false")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("container is privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities %+v, want drop [ALL] and no add", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("container seccompProfile is not RuntimeDefault")
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Error("pod uses a host namespace")
	}

	// Resources and probes.
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v lack cpu/memory requests or a memory limit", c.Resources)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, probe := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if probe.p == nil || probe.p.HTTPGet == nil {
			t.Errorf("%s probe is not an HTTP GET", probe.name)
			continue
		}
		port := probe.p.HTTPGet.Port.IntVal
		if probe.p.HTTPGet.Port.StrVal != "" {
			port = ports[probe.p.HTTPGet.Port.StrVal]
		}
		if probe.p.HTTPGet.Path != probe.path || port != 8081 {
			t.Errorf("%s probe GETs %s on port %d, want %s on 8081", probe.name, probe.p.HTTPGet.Path, port, probe.path)
		}
	}
	if ports["http-metrics"] != 8080 {
		t.Errorf("container ports %v lack http-metrics 8080", ports)
	}
}

func checkNoWildcardsNoSecretWrites(t *testing.T, m manifests) {
	t.Helper()
	readOnly := []string{"get", "list", "watch"}
	for name, rules := range allRules(t, m) {
		for _, r := range rules {
			for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames} {
				for _, v := range field {
					if strings.Contains(v, "*") {
						t.Errorf("%s has a wildcard rule %+v", name, r)
					}
				}
			}
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("%s grants non-resource URLs %v", name, r.NonResourceURLs)
			}
			for _, p := range expand([]rbacv1.PolicyRule{r}) {
				base, _, _ := strings.Cut(p.Resource, "/")
				if p.Group == "" && base == "secrets" && !slices.Contains(readOnly, p.Verb) {
					t.Errorf("%s grants %s: the operator never writes Secrets", name, p)
				}
			}
		}
	}
}

// checkCoverage checks that every rule of the generated ClusterRole is
// granted where the operator needs it: everywhere, or in every watched
// namespace (namespaced resources) and cluster-wide (cluster-scoped ones);
// and the leader-election rules in the release namespace.
func checkCoverage(t *testing.T, g grants, tc operatorCase, managerRules, electionRules []rbacv1.PolicyRule, isClusterScoped func(perm) bool) {
	t.Helper()
	for _, p := range expand(managerRules) {
		switch {
		case len(tc.watchNamespaces) == 0 || isClusterScoped(p):
			if !g.cluster[p] {
				t.Errorf("config/rbac/role.yaml grants %s cluster-wide; the chart does not", p)
			}
		default:
			for _, ns := range tc.watchNamespaces {
				if !g.allows(ns, p) {
					t.Errorf("config/rbac/role.yaml grants %s; the chart does not in watched namespace %s", p, ns)
				}
			}
		}
	}
	for _, p := range expand(electionRules) {
		if !g.allows(releaseNS, p) {
			t.Errorf("config/rbac/leader_election_role.yaml grants %s; the chart does not in %s", p, releaseNS)
		}
	}
}

// checkLeastPrivilege checks the other direction: the chart grants nothing
// that config/rbac does not, and with watchNamespaces nothing namespaced
// cluster-wide.
func checkLeastPrivilege(t *testing.T, m manifests, g grants, tc operatorCase, managerRules, electionRules []rbacv1.PolicyRule, isClusterScoped func(perm) bool) {
	t.Helper()
	allowed := map[perm]bool{}
	for _, p := range expand(managerRules) {
		allowed[p] = true
	}
	election := map[perm]bool{}
	for _, p := range expand(electionRules) {
		election[p] = true
	}
	for name, rules := range g.clusterRole {
		for _, p := range expand(rules) {
			if !allowed[p] {
				t.Errorf("ClusterRole %s grants %s, which config/rbac/role.yaml does not", name, p)
			}
		}
	}
	for ns, perms := range g.roleNS {
		for p := range perms {
			if !allowed[p] && (ns != releaseNS || !election[p]) {
				t.Errorf("a Role in %s grants %s, which config/rbac does not", ns, p)
			}
		}
	}
	for _, rules := range allRules(t, m) {
		for _, r := range rules {
			if len(r.ResourceNames) > 0 {
				t.Errorf("unexpected resourceNames rule %+v", r)
			}
		}
	}
	if len(tc.watchNamespaces) > 0 {
		for p := range g.cluster {
			if !isClusterScoped(p) {
				t.Errorf("with watchNamespaces, %s is granted cluster-wide", p)
			}
		}
	}
}

// checkNamespacedRoles checks that the manager's Roles are in exactly the
// watched namespaces, and that no other Role leaks elsewhere.
func checkNamespacedRoles(t *testing.T, m manifests, tc operatorCase) {
	t.Helper()
	var managerNS, bindingNS []string
	for _, o := range m.ofKind("Role") {
		switch o.Labels["app.kubernetes.io/component"] {
		case "manager-rbac":
			managerNS = append(managerNS, o.Namespace)
		case "leader-election":
			if o.Namespace != releaseNS {
				t.Errorf("leader-election %s is not in the release namespace", o)
			}
		case "cluster-events":
			if o.Namespace != "default" || len(tc.watchNamespaces) == 0 || slices.Contains(tc.watchNamespaces, "default") {
				t.Errorf("unexpected %s", o)
			}
			var r rbacv1.Role
			o.decode(t, &r)
			for _, p := range expand(r.Rules) {
				if p != (perm{"events.k8s.io", "events", "create"}) && p != (perm{"events.k8s.io", "events", "patch"}) {
					t.Errorf("%s grants %s; it is for events only", o, p)
				}
			}
		default:
			t.Errorf("%s has no known component label", o)
		}
	}
	for _, o := range m.ofKind("RoleBinding") {
		if o.Labels["app.kubernetes.io/component"] == "manager-rbac" {
			bindingNS = append(bindingNS, o.Namespace)
		}
	}
	want := slices.Clone(tc.watchNamespaces)
	sort.Strings(want)
	sort.Strings(managerNS)
	sort.Strings(bindingNS)
	if !slices.Equal(managerNS, want) {
		t.Errorf("manager Roles in namespaces %q, want exactly %q", managerNS, want)
	}
	if !slices.Equal(bindingNS, want) {
		t.Errorf("manager RoleBindings in namespaces %q, want exactly %q", bindingNS, want)
	}
	wantEvents := len(tc.watchNamespaces) > 0 && !slices.Contains(tc.watchNamespaces, "default")
	gotEvents := false
	for _, o := range m.ofKind("RoleBinding") {
		if o.Labels["app.kubernetes.io/component"] == "cluster-events" {
			gotEvents = true
		}
	}
	if gotEvents != wantEvents {
		t.Errorf("events RoleBinding in default: %v, want %v", gotEvents, wantEvents)
	}
	if crs := m.ofKind("ClusterRole"); len(crs) != 1 {
		t.Errorf("want one ClusterRole, got %v", crs)
	}
}

func checkMetrics(t *testing.T, m manifests, tc operatorCase) {
	t.Helper()
	svcs := m.ofKind("Service")
	if len(svcs) != 1 {
		t.Fatalf("want one metrics Service, got %v", svcs)
	}
	var svc corev1.Service
	svcs[0].decode(t, &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http-metrics" || svc.Spec.Ports[0].Port != 8080 {
		t.Errorf("metrics Service ports %+v, want http-metrics 8080", svc.Spec.Ports)
	}
	var dep appsv1.Deployment
	m.ofKind("Deployment")[0].decode(t, &dep)
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("metrics Service selector %v does not select the operator Pods %v", svc.Spec.Selector, dep.Spec.Template.Labels)
		}
	}

	sms := m.ofKind("ServiceMonitor")
	if !tc.serviceMonitor {
		if len(sms) != 0 {
			t.Errorf("ServiceMonitor rendered while disabled: %v", sms)
		}
		return
	}
	if len(sms) != 1 {
		t.Fatalf("want one ServiceMonitor, got %v", sms)
	}
	var sm struct {
		APIVersion string `json:"apiVersion"`
		Spec       struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			NamespaceSelector struct {
				MatchNames []string `json:"matchNames"`
			} `json:"namespaceSelector"`
			Endpoints []struct {
				Port string `json:"port"`
				Path string `json:"path"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(sms[0].JSON, &sm); err != nil {
		t.Fatal(err)
	}
	if sm.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion %q", sm.APIVersion)
	}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %v does not select the metrics Service %v", sm.Spec.Selector.MatchLabels, svc.Labels)
		}
	}
	if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{releaseNS}) {
		t.Errorf("ServiceMonitor namespaces %v", sm.Spec.NamespaceSelector.MatchNames)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http-metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v, want http-metrics /metrics", sm.Spec.Endpoints)
	}
}

// TestOperatorChartRefuses checks values the chart must refuse.
func TestOperatorChartRefuses(t *testing.T) {
	helmBinary(t)
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"replicas without leader election", map[string]any{"replicaCount": 2, "leaderElection": map[string]any{"enabled": false}}, "leaderElection"},
		{"root pod", map[string]any{"podSecurityContext": map[string]any{"runAsNonRoot": false}}, "runAsNonRoot"},
		{"writable root filesystem", map[string]any{"containerSecurityContext": map[string]any{"readOnlyRootFilesystem": false}}, "readOnlyRootFilesystem"},
		{"unknown key", map[string]any{"watchNamespace": []string{"a"}}, "watchNamespace"},
		{"bad namespace", map[string]any{"watchNamespaces": []string{"Team_A"}}, "watchNamespaces"},
		{"duplicate namespace", map[string]any{"watchNamespaces": []string{"a", "a"}}, "watchNamespaces"},
		{"bad duration", map[string]any{"resyncInterval": "ten minutes"}, "resyncInterval"},
		{"bad log level", map[string]any{"logLevel": "verbose"}, "logLevel"},
		{"serviceMonitor without metrics", map[string]any{"metrics": map[string]any{"enabled": false}, "serviceMonitor": map[string]any{"enabled": true}}, "metrics.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := helmTemplate(t, operatorChart, releaseNS, tc.values)
			if err == nil {
				t.Fatalf("helm template accepted %v", tc.values)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not mention %q: %v", tc.want, err)
			}
		})
	}
}

// TestChartCRDsMatchGenerated fails when charts/usersync-operator/crds is a
// stale copy of config/crd/bases: run `make helm-crds`.
func TestChartCRDsMatchGenerated(t *testing.T) {
	names := func(dir string) []string {
		t.Helper()
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(files))
		for i, f := range files {
			out[i] = filepath.Base(f)
		}
		return out
	}
	want, got := names(crdBases), names(chartCRDs)
	if len(want) == 0 {
		t.Fatalf("no CRDs in %s", crdBases)
	}
	if !slices.Equal(want, got) {
		t.Fatalf("chart CRDs %v differ from config/crd/bases %v: run `make helm-crds`", got, want)
	}
	for _, n := range want {
		a, err := os.ReadFile(filepath.Join(crdBases, n))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(chartCRDs, n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s/%s differs from %s/%s: run `make helm-crds`", chartCRDs, n, crdBases, n)
		}
	}
}

func teamUsers(n int) []map[string]any {
	users := make([]map[string]any, n)
	for i := range users {
		users[i] = map[string]any{
			"key":        fmt.Sprintf("user-%04d", i),
			"email":      fmt.Sprintf("user-%04d@example.com", i),
			"firstName":  "User",
			"lastName":   fmt.Sprint(i),
			"attributes": map[string]any{"hs_job_title": "Engineer", "seats": i % 5, "admin": i%2 == 0},
		}
	}
	return users
}

// userSyncs decodes the rendered UserSyncs strictly into the API type.
func userSyncs(t *testing.T, m manifests) []usersv1.UserSync {
	t.Helper()
	var out []usersv1.UserSync
	for _, o := range m.ofKind("UserSync") {
		var us usersv1.UserSync
		o.decode(t, &us)
		out = append(out, us)
	}
	return out
}

func TestTeamUsersChunks(t *testing.T) {
	helmBinary(t)
	const ns = "team-a"
	for _, tc := range []struct {
		name      string
		users     int
		extraRefs []map[string]any
		wantSyncs int
		wantMax   int
	}{
		{name: "1200 users", users: 1200, wantSyncs: 3, wantMax: 500},
		{name: "500 users", users: 500, wantSyncs: 1, wantMax: 500},
		{name: "501 users", users: 501, wantSyncs: 2, wantMax: 500},
		{name: "3 providers", users: 1200, extraRefs: []map[string]any{{"name": "propel"}, {"kind": "ClusterUserProvider", "name": "shared"}},
			wantSyncs: 4, wantMax: 333},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			values := map[string]any{"users": teamUsers(tc.users)}
			if tc.extraRefs != nil {
				values["extraProviderRefs"] = tc.extraRefs
			}
			m := mustTemplate(t, exampleChart, ns, values)
			syncs := userSyncs(t, m)
			if len(syncs) != tc.wantSyncs {
				t.Fatalf("%d UserSyncs, want %d", len(syncs), tc.wantSyncs)
			}
			var keys []string
			for i, us := range syncs {
				if want := fmt.Sprintf("%s-%d", release, i+1); us.Name != want || us.Namespace != ns {
					t.Errorf("UserSync %d is %s/%s, want %s/%s", i, us.Namespace, us.Name, ns, want)
				}
				if n := len(us.Spec.Users); n == 0 || n > tc.wantMax {
					t.Errorf("%s has %d users, want 1..%d", us.Name, n, tc.wantMax)
				}
				if r := len(us.Spec.Users) * len(us.Spec.ProviderRefs); r > 1000 {
					t.Errorf("%s has %d records, over the 1000 limit", us.Name, r)
				}
				if len(us.Spec.ProviderRefs) != 1+len(tc.extraRefs) {
					t.Errorf("%s providerRefs %+v", us.Name, us.Spec.ProviderRefs)
				}
				if us.Spec.DeletionPolicy != usersv1.DeletionPolicy("Delete") {
					t.Errorf("%s deletionPolicy %q, want the example's Delete", us.Name, us.Spec.DeletionPolicy)
				}
				for _, u := range us.Spec.Users {
					keys = append(keys, u.Key)
				}
			}
			// Every user once, in list order.
			var want []string
			for _, u := range teamUsers(tc.users) {
				want = append(want, u["key"].(string))
			}
			if !slices.Equal(keys, want) {
				t.Errorf("the UserSyncs hold %d users, not the %d users of the list in order", len(keys), len(want))
			}
			ups := m.ofKind("UserProvider")
			if len(ups) != 1 {
				t.Fatalf("want the team's UserProvider, got %v", ups)
			}
			var up usersv1.UserProvider
			ups[0].decode(t, &up)
			if up.Spec.CredentialsRef.Name == "" || up.Spec.CredentialsRef.Key == "" {
				t.Errorf("UserProvider has no Secret reference: %+v", up.Spec.CredentialsRef)
			}
			if s := m.ofKind("Secret"); len(s) != 0 {
				t.Errorf("the example renders Secrets %v; tokens do not belong in values", s)
			}
		})
	}
}

func TestTeamUsersRefusesEmptyList(t *testing.T) {
	helmBinary(t)
	const ns = "team-a"
	for _, tc := range []struct {
		name   string
		values map[string]any
		ok     bool
	}{
		{"empty list", map[string]any{"users": []any{}}, false},
		{"empty list under Orphan", map[string]any{"users": []any{}, "deletionPolicy": "Orphan"}, false},
		{"empty list allowed", map[string]any{"users": []any{}, "allowEmpty": true}, true},
		{"null list", map[string]any{"users": nil}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := helmTemplate(t, exampleChart, ns, tc.values)
			if !tc.ok {
				if err == nil {
					t.Fatalf("helm template rendered an empty users list without allowEmpty: %d objects", len(m))
				}
				if !strings.Contains(err.Error(), "users") {
					t.Errorf("error does not name users: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			syncs := userSyncs(t, m)
			if len(syncs) != 1 || len(syncs[0].Spec.Users) != 0 {
				t.Errorf("allowEmpty: want one empty UserSync, got %d", len(syncs))
			}
		})
	}
}

func TestTeamUsersRefusesBadUsers(t *testing.T) {
	helmBinary(t)
	for _, tc := range []struct {
		name  string
		users []map[string]any
		extra map[string]any
		want  string
	}{
		{"duplicate key", []map[string]any{{"key": "a"}, {"key": "a"}}, nil, "listed twice"},
		{"duplicate email", []map[string]any{{"key": "a", "email": "x@example.com"}, {"key": "b", "email": "X@example.com"}}, nil, "listed twice"},
		{"bad email", []map[string]any{{"key": "a", "email": "not-an-email"}}, nil, "email"},
		{"unknown user field", []map[string]any{{"key": "a", "mail": "a@example.com"}}, nil, "mail"},
		{"too many attributes", []map[string]any{{"key": "a", "attributes": map[string]any{
			"a1": 1, "a2": 1, "a3": 1, "a4": 1, "a5": 1, "a6": 1, "a7": 1, "a8": 1, "a9": 1}}}, nil, "attributes"},
		{"chunk over 500", []map[string]any{{"key": "a"}}, map[string]any{"maxUsersPerUserSync": 501}, "maxUsersPerUserSync"},
		{"created ClusterUserProvider", []map[string]any{{"key": "a"}}, map[string]any{"provider": map[string]any{
			"create": true, "kind": "ClusterUserProvider", "name": "x", "type": "HubSpot",
			"credentialsRef": map[string]any{"name": "s", "key": "k"}}}, "kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			values := map[string]any{"users": tc.users}
			for k, v := range tc.extra {
				values[k] = v
			}
			if _, err := helmTemplate(t, exampleChart, "team-a", values); err == nil {
				t.Fatalf("helm template accepted %v", values)
			} else if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not mention %q: %v", tc.want, err)
			}
		})
	}
}
