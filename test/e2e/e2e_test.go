//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
	ucemu "github.com/usersync/usersync-operator/internal/providers/usercom/emulator"
)

// The release, as a user installs it (the chart's README).
const (
	releaseName      = "usersync-operator"
	releaseNamespace = "usersync-system"
	// leaseName is the operator's default --leader-election-id.
	leaseName      = "usersync-operator.users.usersync.io"
	teamNamespace  = "e2e-team"
	hubspotToken   = "e2e-hubspot-token"
	propelClientID = "e2e-propel-client"
	propelSecret   = "e2e-propel-secret"
	usercomKey     = "e2e-usercom-api-key"
	metricsPort    = 8080 // the chart's metrics.port
	healthPort     = 8081 // the chart's healthPort
)

var _ = Describe("The operator on a real node", Ordered, func() {
	var (
		em *hsemu.Emulator
		pe *propemu.Emulator
		ue *ucemu.Emulator
	)

	BeforeAll(func() {
		// The vendor emulators listen on the node's address: the Pods
		// reach them over their bridge, as they would reach a vendor.
		addr := net.JoinHostPort(node.cfg.nodeIP, "0")
		em = hsemu.New(hsemu.Options{Tokens: map[string][]string{hubspotToken: hubspot.DefaultScopes}})
		Expect(em.StartOn(addr)).To(Succeed())
		DeferCleanup(em.Close)
		pe = propemu.New(propemu.Options{Clients: map[string]string{propelClientID: propelSecret}})
		Expect(pe.StartOn(addr)).To(Succeed())
		DeferCleanup(pe.Close)
		ue = ucemu.New(ucemu.Options{Tokens: []string{usercomKey}})
		Expect(ue.StartOn(addr)).To(Succeed())
		DeferCleanup(ue.Close)
		_, _ = fmt.Fprintf(GinkgoWriter, "emulators: HubSpot %s, Propel %s, user.com %s\n", em.URL(), pe.URL(), ue.URL())
	})

	It("installs the chart with the imported image, and the Deployment becomes Available", func(ctx SpecContext) {
		repo, tag := splitImage(node.cfg.image)
		out, err := node.helm(ctx, "install", releaseName, node.cfg.chart,
			"--namespace", releaseNamespace, "--create-namespace",
			"--set", "image.repository="+repo, "--set", "image.tag="+tag, "--set", "image.pullPolicy=Never",
			"--set", "replicaCount=2", "--wait", "--timeout", "5m")
		Expect(err).NotTo(HaveOccurred(), out)
		expectAvailable(ctx, 2)
		pods := operatorPods(ctx)
		Expect(pods).To(HaveLen(2))
		_, podNet, err := net.ParseCIDR(node.cfg.podCIDR)
		Expect(err).NotTo(HaveOccurred())
		for _, p := range pods {
			Expect(p.Spec.Containers[0].Image).To(Equal(node.cfg.image))
			Expect(p.Spec.Containers[0].ImagePullPolicy).To(Equal(corev1.PullNever))
			// On the Pod network, reaching the API server through the
			// kubernetes Service like any in-cluster client.
			Expect(p.Spec.HostNetwork).To(BeFalse())
			Expect(podNet.Contains(net.ParseIP(p.Status.PodIP))).To(BeTrue(), "Pod IP %s in %s", p.Status.PodIP, podNet)
		}
	}, SpecTimeout(7*time.Minute))

	It("answers the kubelet's readiness and liveness probes, and /healthz, /readyz and /metrics", func(ctx SpecContext) {
		for _, p := range operatorPods(ctx) {
			for _, path := range []string{"/healthz", "/readyz"} {
				Expect(httpOK(http.DefaultClient, podURL(p, healthPort, path))(ctx)).To(Succeed())
			}
			code, body, err := httpGet(ctx, http.DefaultClient, podURL(p, metricsPort, "/metrics"))
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(http.StatusOK))
			Expect(body).To(ContainSubstring("go_goroutines"))
			// The kubelet's own counters: it probed the Pod, and the
			// probes passed (the first liveness probe runs 15 s in).
			Eventually(ctx, func(g Gomega) {
				for _, probe := range []string{"Readiness", "Liveness"} {
					ok, err := probeCount(ctx, p.Name, probe, "successful")
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(ok).To(BeNumerically(">=", 1), "%s probes of %s that succeeded", probe, p.Name)
				}
			}).WithPolling(2 * time.Second).WithTimeout(90 * time.Second).Should(Succeed())
			failed, err := probeCount(ctx, p.Name, "Liveness", "failed")
			Expect(err).NotTo(HaveOccurred())
			Expect(failed).To(BeZero(), "failed liveness probes of %s", p.Name)
		}
	}, SpecTimeout(3*time.Minute))

	It("holds the leader Lease with one of its Pods, which says so on /metrics", func(ctx SpecContext) {
		var leader corev1.Pod
		Eventually(ctx, func(g Gomega) {
			holder, _ := leaseHolder(ctx, g)
			pods := operatorPods(ctx)
			i := slices.IndexFunc(pods, func(p corev1.Pod) bool { return p.Name == holder })
			g.Expect(i).NotTo(Equal(-1), "the Lease's holder %q is one of the Pods", holder)
			leader = pods[i]
		}).WithTimeout(time.Minute).Should(Succeed())
		_, _ = fmt.Fprintf(GinkgoWriter, "leader: %s\n", leader.Name)
		Eventually(ctx, func(g Gomega) {
			g.Expect(leaderMetric(ctx, leader)).To(Equal("1"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	}, SpecTimeout(2*time.Minute))

	It("converges UserSyncs against the HubSpot, Propel and user.com emulators", func(ctx SpecContext) {
		Expect(node.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: teamNamespace}})).To(Succeed())
		Expect(node.k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "vendor-credentials", Namespace: teamNamespace},
			StringData: map[string]string{"token": hubspotToken, "clientId": propelClientID,
				"clientSecret": propelSecret, "apiKey": usercomKey},
		})).To(Succeed())
		for _, p := range []struct {
			name, endpoint, key string
			typ                 usersv1.ProviderType
		}{
			{"hubspot", em.URL(), "token", usersv1.ProviderHubSpot},
			{"propel", pe.URL() + "/v2", "clientSecret", usersv1.ProviderPropel},
			{"usercom", ue.URL(), "apiKey", usersv1.ProviderUserCom}, // URL() ends in /api/public/
		} {
			Expect(node.k8s.Create(ctx, &usersv1.UserProvider{
				ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: teamNamespace},
				Spec: usersv1.ProviderSpec{
					Type: p.typ, Endpoint: p.endpoint, AllowInsecureHTTP: true,
					CredentialsRef: usersv1.SecretKeyReference{Name: "vendor-credentials", Key: p.key},
				},
			})).To(Succeed())
		}
		start := time.Now()
		// "team" (HubSpot, with a HubSpot property) goes through the
		// fail-over and its deletion below; "support" is synced to Propel
		// and user.com.
		Expect(node.k8s.Create(ctx, &usersv1.UserSync{
			ObjectMeta: metav1.ObjectMeta{Name: "team", Namespace: teamNamespace},
			Spec: usersv1.UserSyncSpec{
				ProviderRefs:   []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hubspot"}},
				DeletionPolicy: usersv1.DeletionPolicyDelete,
				Users: []usersv1.User{
					teamUser("alice", "Platform engineer"), teamUser("bob", "SRE"), teamUser("carol", "Engineering manager"),
				},
			},
		})).To(Succeed())
		Expect(node.k8s.Create(ctx, &usersv1.UserSync{
			ObjectMeta: metav1.ObjectMeta{Name: "support", Namespace: teamNamespace},
			Spec: usersv1.UserSyncSpec{
				ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "propel"}, {Kind: usersv1.KindUserProvider, Name: "usercom"}},
				Users: []usersv1.User{
					{Key: "erin", Email: "erin@example.com", FirstName: "Erin"},
					{Key: "frank", Email: "frank@example.com", FirstName: "Frank"},
				},
			},
		})).To(Succeed())
		expectSynced(ctx, "team", 3)
		expectSynced(ctx, "support", 4)
		_, _ = fmt.Fprintf(GinkgoWriter, "both UserSyncs Ready in %s\n", time.Since(start).Round(100*time.Millisecond))
		Expect(emails(em)).To(ConsistOf("alice@example.com", "bob@example.com", "carol@example.com"))
		var propelEmails, usercomEmails []any
		for _, u := range pe.Users() {
			propelEmails = append(propelEmails, u["email"])
		}
		for _, u := range ue.Users() {
			usercomEmails = append(usercomEmails, u.Email)
		}
		Expect(propelEmails).To(ConsistOf("erin@example.com", "frank@example.com"))
		Expect(usercomEmails).To(ConsistOf("erin@example.com", "frank@example.com"))

		leader := leaderPod(ctx)
		_, body, err := httpGet(ctx, http.DefaultClient, podURL(leader, metricsPort, "/metrics"))
		Expect(err).NotTo(HaveOccurred())
		Expect(body).To(MatchRegexp(`(?m)^usersync_record_writes_total\{[^}]*outcome="ok"[^}]*\} [1-9]`))
		Expect(body).To(MatchRegexp(`(?m)^usersync_provider_ready\{provider="UserProvider/` + teamNamespace + `/hubspot"\} 1$`))
	}, SpecTimeout(3*time.Minute))

	It("moves the Lease to the other Pod when the leader's Pod is deleted, and the new leader syncs", func(ctx SpecContext) {
		old := leaderPod(ctx)
		var lease coordinationv1.Lease
		Expect(node.k8s.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: leaseName}, &lease)).To(Succeed())
		transitions := ptrValue(lease.Spec.LeaseTransitions)
		pods := operatorPods(ctx)
		Expect(pods).To(HaveLen(2))
		next := pods[0]
		if next.Name == old.Name {
			next = pods[1]
		}
		// Cordon the node first: the ReplicaSet's replacement Pod stays
		// Pending, so only the standby replica can take the Lease (a Pod
		// starting at once may otherwise win the race for it, as it may in
		// a real cluster).
		setUnschedulable(ctx, true)
		start := time.Now()
		Expect(node.k8s.Delete(ctx, &old)).To(Succeed())
		Eventually(ctx, func(g Gomega) {
			holder, l := leaseHolder(ctx, g)
			g.Expect(holder).To(Equal(next.Name))
			g.Expect(ptrValue(l.Spec.LeaseTransitions)).To(BeNumerically(">", transitions))
		}).WithTimeout(time.Minute).Should(Succeed())
		_, _ = fmt.Fprintf(GinkgoWriter, "the Lease moved from %s to %s in %s\n", old.Name, next.Name, time.Since(start).Round(100*time.Millisecond))
		Eventually(ctx, func(g Gomega) {
			g.Expect(leaderMetric(ctx, next)).To(Equal("1"))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		// The new leader writes: a user added after the fail-over.
		Eventually(ctx, func() error {
			var us usersv1.UserSync
			if err := node.k8s.Get(ctx, client.ObjectKey{Namespace: teamNamespace, Name: "team"}, &us); err != nil {
				return err
			}
			us.Spec.Users = append(us.Spec.Users, teamUser("dave", "Support engineer"))
			return node.k8s.Update(ctx, &us)
		}).WithTimeout(30 * time.Second).Should(Succeed())
		expectSynced(ctx, "team", 4)
		Expect(emails(em)).To(ConsistOf("alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"))

		// Uncordoned, the replacement Pod runs.
		setUnschedulable(ctx, false)
		expectAvailable(ctx, 2)
	}, SpecTimeout(5*time.Minute))

	It("deletes the users at the vendor when the UserSync is deleted and the deletions approved", func(ctx SpecContext) {
		key := client.ObjectKey{Namespace: teamNamespace, Name: "team"}
		Expect(node.k8s.Delete(ctx, &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}})).To(Succeed())
		// Every user at once: the mass-deletion guard holds them until the
		// UserSync carries the approval its Degraded condition names.
		approval := regexp.MustCompile(regexp.QuoteMeta(usersv1.AnnotationApproveDeletions) + `=([0-9a-f]+)`)
		var value string
		Eventually(ctx, func(g Gomega) {
			var us usersv1.UserSync
			g.Expect(node.k8s.Get(ctx, key, &us)).To(Succeed())
			c := meta.FindStatusCondition(us.Status.Conditions, usersv1.ConditionDegraded)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(usersv1.ReasonDeletionHeld))
			m := approval.FindStringSubmatch(c.Message)
			g.Expect(m).To(HaveLen(2), c.Message)
			value = m[1]
		}).WithTimeout(time.Minute).Should(Succeed())
		Expect(emails(em)).To(HaveLen(4), "nothing deleted before the approval")
		Eventually(ctx, func() error {
			var us usersv1.UserSync
			if err := node.k8s.Get(ctx, key, &us); err != nil {
				return err
			}
			patch := client.MergeFrom(us.DeepCopy())
			if us.Annotations == nil {
				us.Annotations = map[string]string{}
			}
			us.Annotations[usersv1.AnnotationApproveDeletions] = value
			return node.k8s.Patch(ctx, &us, patch)
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Eventually(ctx, func(g Gomega) {
			err := node.k8s.Get(ctx, client.ObjectKey{Namespace: teamNamespace, Name: "team"}, &usersv1.UserSync{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the UserSync is gone (its finalizer removed): %v", err)
		}).WithTimeout(2 * time.Minute).Should(Succeed())
		Expect(emails(em)).To(BeEmpty())
	}, SpecTimeout(3*time.Minute))

	It("restarted no container: no liveness probe failed", func(ctx SpecContext) {
		for _, p := range operatorPods(ctx) {
			Expect(p.Status.ContainerStatuses).To(HaveLen(1))
			Expect(p.Status.ContainerStatuses[0].RestartCount).To(BeZero(), "restarts of %s", p.Name)
			failed, err := probeCount(ctx, p.Name, "Liveness", "failed")
			Expect(err).NotTo(HaveOccurred())
			Expect(failed).To(BeZero(), "failed liveness probes of %s", p.Name)
		}
	}, SpecTimeout(time.Minute))

	It("uninstalls with Helm, and the kubelet stops the Pods", func(ctx SpecContext) {
		out, err := node.helm(ctx, "uninstall", releaseName, "--namespace", releaseNamespace, "--wait", "--timeout", "2m")
		Expect(err).NotTo(HaveOccurred(), out)
		// Gone from the API once the kubelet has stopped their containers.
		Eventually(ctx, func(g Gomega) {
			var pods corev1.PodList
			g.Expect(node.k8s.List(ctx, &pods, client.InNamespace(releaseNamespace))).To(Succeed())
			g.Expect(pods.Items).To(BeEmpty())
		}).WithTimeout(2 * time.Minute).Should(Succeed())
	}, SpecTimeout(5*time.Minute))
})

// helm runs the Helm binary against the cluster, its cache and config in
// the run directory.
func (c *cluster) helm(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.cfg.helm, append(args, "--kubeconfig", c.kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+c.path("helm", "cache"),
		"HELM_CONFIG_HOME="+c.path("helm", "config"), "HELM_DATA_HOME="+c.path("helm", "data"))
	out, err := cmd.CombinedOutput()
	_, _ = fmt.Fprintf(GinkgoWriter, "helm %s\n%s", strings.Join(args, " "), out)
	return string(out), err
}

// splitImage splits repository:tag (make image always tags).
func splitImage(ref string) (repo, tag string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}

func teamUser(key, title string) usersv1.User {
	return usersv1.User{
		Key: key, Email: key + "@example.com", FirstName: strings.ToUpper(key[:1]) + key[1:],
		Attributes: map[string]usersv1.AttributeValue{"hs_job_title": usersv1.StringValue(title)},
	}
}

func emails(em *hsemu.Emulator) []string {
	var out []string
	for _, u := range em.Users() {
		out = append(out, u.Properties["hs_email"])
	}
	return out
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// operatorPods are the release's Pods that are not being deleted.
func operatorPods(ctx context.Context) []corev1.Pod {
	var list corev1.PodList
	Expect(node.k8s.List(ctx, &list, client.InNamespace(releaseNamespace),
		client.MatchingLabels{"app.kubernetes.io/name": "usersync-operator", "app.kubernetes.io/instance": releaseName})).To(Succeed())
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// expectAvailable waits for the Deployment to be Available with n ready
// replicas, every one of its Pods Running and Ready.
func expectAvailable(ctx context.Context, n int32) {
	Eventually(ctx, func(g Gomega) {
		var d appsv1.Deployment
		g.Expect(node.k8s.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: releaseName}, &d)).To(Succeed())
		available := false
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
				available = true
			}
		}
		g.Expect(available).To(BeTrue(), "Deployment Available")
		g.Expect(d.Status.ReadyReplicas).To(Equal(n))
		g.Expect(d.Status.AvailableReplicas).To(Equal(n))
		pods := operatorPods(ctx)
		g.Expect(pods).To(HaveLen(int(n)))
		for _, p := range pods {
			g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), p.Name)
			ready := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
				return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
			})
			g.Expect(ready).To(BeTrue(), "%s Ready", p.Name)
		}
	}).WithPolling(time.Second).WithTimeout(3 * time.Minute).Should(Succeed())
}

// expectSynced waits for a UserSync of the team namespace to be Ready with
// n records (users × providers) Synced, for its current generation.
func expectSynced(ctx context.Context, name string, n int32) {
	Eventually(ctx, func(g Gomega) {
		var us usersv1.UserSync
		g.Expect(node.k8s.Get(ctx, client.ObjectKey{Namespace: teamNamespace, Name: name}, &us)).To(Succeed())
		g.Expect(us.Status.ObservedGeneration).To(Equal(us.Generation))
		g.Expect(meta.IsStatusConditionTrue(us.Status.Conditions, usersv1.ConditionReady)).To(BeTrue(),
			"Ready: %+v", meta.FindStatusCondition(us.Status.Conditions, usersv1.ConditionReady))
		g.Expect(us.Status.Summary.Synced).To(Equal(n))
	}).WithPolling(time.Second).WithTimeout(2 * time.Minute).Should(Succeed())
}

// setUnschedulable cordons or uncordons the node.
func setUnschedulable(ctx context.Context, v bool) {
	var n corev1.Node
	Expect(node.k8s.Get(ctx, client.ObjectKey{Name: nodeName}, &n)).To(Succeed())
	patch := client.MergeFrom(n.DeepCopy())
	n.Spec.Unschedulable = v
	Expect(node.k8s.Patch(ctx, &n, patch)).To(Succeed())
}

// leaseHolder returns the name of the Pod holding the leader Lease
// (controller-runtime's identity is <hostname>_<uuid>, and a Pod's
// hostname is its name).
func leaseHolder(ctx context.Context, g Gomega) (string, coordinationv1.Lease) {
	var l coordinationv1.Lease
	g.Expect(node.k8s.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: leaseName}, &l)).To(Succeed())
	g.Expect(l.Spec.HolderIdentity).NotTo(BeNil())
	holder, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	return holder, l
}

func leaderPod(ctx context.Context) corev1.Pod {
	holder, _ := leaseHolder(ctx, Default)
	for _, p := range operatorPods(ctx) {
		if p.Name == holder {
			return p
		}
	}
	Fail("the Lease's holder " + holder + " is none of the Pods")
	return corev1.Pod{}
}

// leaderMetric is controller-runtime's leader_election_master_status of
// the operator's Lease on a Pod's /metrics ("" when absent).
func leaderMetric(ctx context.Context, p corev1.Pod) (string, error) {
	_, body, err := httpGet(ctx, http.DefaultClient, podURL(p, metricsPort, "/metrics"))
	if err != nil {
		return "", err
	}
	prefix := `leader_election_master_status{name="` + leaseName + `"} `
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return v, nil
		}
	}
	return "", nil
}

func podURL(p corev1.Pod, port int, path string) string {
	return "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port)) + path
}

// probeCount sums the kubelet's prober_probe_total of a Pod's probes of a
// type (Liveness, Readiness) with a result (successful, failed).
func probeCount(ctx context.Context, pod, probeType, result string) (float64, error) {
	url := "https://" + net.JoinHostPort(node.cfg.nodeIP, strconv.Itoa(kubeletPort)) + "/metrics/probes"
	code, body, err := httpGet(ctx, insecureHTTPClient(), url)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %d", url, code)
	}
	var sum float64
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "prober_probe_total{") || !strings.Contains(line, `pod="`+pod+`"`) ||
			!strings.Contains(line, `probe_type="`+probeType+`"`) || !strings.Contains(line, `result="`+result+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}
