package chartrbac

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/usersync/usersync-operator/internal/testenv"
)

const release = "uso"

var ctx = context.Background()

// rbacKinds are the kinds of the chart's identity and permissions: the
// objects applied. The Deployment is not: the test runs its container.
var rbacKinds = []string{"ServiceAccount", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"}

// render runs `helm template` on the operator chart for a release in
// namespace with values, and returns every rendered object.
func render(namespace string, values map[string]any) []*unstructured.Unstructured {
	GinkgoHelper()
	args := []string{"template", release, filepath.Join(testenv.RepoRoot(), "charts", "usersync-operator"), "--namespace", namespace}
	if values != nil {
		b, err := yaml.Marshal(values)
		Expect(err).NotTo(HaveOccurred())
		p := filepath.Join(GinkgoT().TempDir(), "values.yaml")
		Expect(os.WriteFile(p, b, 0o600)).To(Succeed())
		args = append(args, "--values", p)
	}
	cmd := exec.Command(helm, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	Expect(cmd.Run()).To(Succeed(), "helm %s\n%s", strings.Join(args, " "), stderr.String())

	var out []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(&stdout))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		Expect(err).NotTo(HaveOccurred())
		js, err := yaml.YAMLToJSON(doc)
		Expect(err).NotTo(HaveOccurred())
		if string(js) == "null" {
			continue // a document of comments only
		}
		u := &unstructured.Unstructured{}
		Expect(u.UnmarshalJSON(js)).To(Succeed())
		out = append(out, u)
	}
}

func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// cut takes one grant out of the rendered RBAC: verb (every verb when
// empty) on group/resource, from every Role or ClusterRole (kind) that
// grants it. The rest of each rule stays.
type cut struct {
	kind, group, resource, verb string
}

func (c cut) String() string {
	verb := c.verb
	if verb == "" {
		verb = "every verb"
	}
	group := c.group
	if group == "" {
		group = "core"
	}
	return fmt.Sprintf("%s on %s.%s from the %s", verb, c.resource, group, c.kind)
}

// apply returns rules without the cut grant, and whether any rule had it.
func (c cut) apply(rules []rbacv1.PolicyRule) ([]rbacv1.PolicyRule, bool) {
	without := func(list []string, s string) []string {
		return slices.DeleteFunc(slices.Clone(list), func(x string) bool { return x == s })
	}
	var out []rbacv1.PolicyRule
	found := false
	for _, r := range rules {
		if !slices.Contains(r.APIGroups, c.group) || !slices.Contains(r.Resources, c.resource) ||
			(c.verb != "" && !slices.Contains(r.Verbs, c.verb)) {
			out = append(out, r)
			continue
		}
		found = true
		// The rule's other resources, and the resource in its other groups,
		// keep every verb; the resource keeps the verbs not cut.
		if rest := without(r.Resources, c.resource); len(rest) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: rest, Verbs: r.Verbs})
		}
		if groups := without(r.APIGroups, c.group); len(groups) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: groups, Resources: []string{c.resource}, Verbs: r.Verbs})
		}
		if verbs := without(r.Verbs, c.verb); c.verb != "" && len(verbs) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: []string{c.group}, Resources: []string{c.resource}, Verbs: verbs})
		}
	}
	return out, found
}

// applyRBAC creates, as the admin, the rendered ServiceAccount, roles and
// bindings (and the namespaces they are in), with the cut grant taken out
// when c is not nil. It returns the ServiceAccount's name.
func applyRBAC(objs []*unstructured.Unstructured, c *cut) string {
	GinkgoHelper()
	cutDone := false
	for _, o := range objs {
		if !slices.Contains(rbacKinds, o.GetKind()) {
			continue
		}
		if ns := o.GetNamespace(); ns != "" {
			ensureNamespace(ns)
		}
		if c != nil && o.GetKind() == c.kind {
			var role rbacv1.ClusterRole // a Role has the same rules
			Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role)).To(Succeed())
			var found bool
			role.Rules, found = c.apply(role.Rules)
			cutDone = cutDone || found
			rules, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&role)
			Expect(err).NotTo(HaveOccurred())
			o.Object["rules"] = rules["rules"]
		}
		Expect(k8s.Create(ctx, o)).To(Succeed(), "creating the chart's %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
	}
	if c != nil {
		Expect(cutDone).To(BeTrue(), "no rendered %s grants what the spec cuts (%s): the cut is stale", c.kind, c)
	}
	sas := ofKind(objs, "ServiceAccount")
	Expect(sas).To(HaveLen(1), "the chart renders one ServiceAccount")
	waitAuthorized(objs, sas[0].GetNamespace(), sas[0].GetName())
	return sas[0].GetName()
}

// waitAuthorized waits until the API server's RBAC authorizer, which
// learns of new roles and bindings through its informers, grants the
// ServiceAccount a rule of every rendered binding: an operator started
// earlier could be denied for a moment, and that denial would fail the
// spec.
func waitAuthorized(objs []*unstructured.Unstructured, saNS, sa string) {
	GinkgoHelper()
	firstRule := map[string]rbacv1.PolicyRule{} // "kind/namespace/name" of the role
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, o := range ofKind(objs, kind) {
			var role rbacv1.ClusterRole
			Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role)).To(Succeed())
			Expect(role.Rules).NotTo(BeEmpty(), "%s %s", kind, o.GetName())
			firstRule[kind+"/"+o.GetNamespace()+"/"+o.GetName()] = role.Rules[0]
		}
	}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, o := range ofKind(objs, kind) {
			var b rbacv1.RoleBinding // a ClusterRoleBinding has the same roleRef
			Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b)).To(Succeed())
			roleNS := o.GetNamespace()
			if b.RoleRef.Kind == "ClusterRole" {
				roleNS = ""
			}
			rule, ok := firstRule[b.RoleRef.Kind+"/"+roleNS+"/"+b.RoleRef.Name]
			Expect(ok).To(BeTrue(), "%s %s binds %s %s, which the chart does not render", kind, o.GetName(), b.RoleRef.Kind, b.RoleRef.Name)
			resource, sub, _ := strings.Cut(rule.Resources[0], "/")
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   "system:serviceaccount:" + saNS + ":" + sa,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: o.GetNamespace(), Verb: rule.Verbs[0],
					Group: rule.APIGroups[0], Resource: resource, Subresource: sub}}}
			Eventually(func(g Gomega) {
				got, err := clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(got.Status.Allowed).To(BeTrue(), "%+v: %s", sar.Spec.ResourceAttributes, got.Status.Reason)
			}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
		}
	}
}

func ensureNamespace(name string) {
	GinkgoHelper()
	err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
}

// operatorArgs returns the arguments of the rendered Deployment's manager
// container, as the operator runs in the cluster, with two changes a
// process outside a Pod needs: the metrics and health endpoints listen on
// free loopback ports (the Pod has its own network; the test's host is
// shared), and the Lease's namespace, which a Pod reads from its
// ServiceAccount mount, is passed as a flag.
func operatorArgs(objs []*unstructured.Unstructured, releaseNS string) []string {
	GinkgoHelper()
	deps := ofKind(objs, "Deployment")
	Expect(deps).To(HaveLen(1))
	var dep appsv1.Deployment
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(deps[0].Object, &dep)).To(Succeed())
	var args []string
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "manager" {
			args = slices.Clone(c.Args)
		}
	}
	Expect(args).To(ContainElement("--leader-elect"), "the chart's default runs with leader election")
	for i, a := range args {
		for _, flag := range []string{"--metrics-bind-address=", "--health-probe-bind-address="} {
			if strings.HasPrefix(a, flag) && a != flag+"0" {
				args[i] = flag + "127.0.0.1:0"
			}
		}
	}
	return append(args, "--leader-election-namespace="+releaseNS)
}
