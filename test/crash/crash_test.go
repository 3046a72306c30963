package crash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

const token = "pat-crash-test"

// operator is one run of the operator binary.
type operator struct {
	cmd  *exec.Cmd
	done chan error
}

func startOperator(log string) *operator { return startOperatorWith(log, kubeconfig) }

func startOperatorWith(log, kubeconfig string, extra ...string) *operator {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	Expect(err).NotTo(HaveOccurred())
	args := append([]string{"--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--resync-interval=3s", "--retry-base=200ms", "--retry-max=2s", "--not-ready-requeue=1s"}, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = f, f
	Expect(cmd.Start()).To(Succeed())
	o := &operator{cmd: cmd, done: make(chan error, 1)}
	go func() { o.done <- cmd.Wait(); _ = f.Close() }()
	return o
}

// kill sends SIGKILL: no graceful stop, no final status write.
func (o *operator) kill() {
	_ = o.cmd.Process.Kill()
	<-o.done //nolint:errcheck // the process was SIGKILLed: its exit error is expected
}

func userList(prefix string, n int) []usersv1.User {
	out := make([]usersv1.User, n)
	for i := range out {
		k := fmt.Sprintf("%s%04d", prefix, i)
		out[i] = usersv1.User{Key: k, Email: k + "@example.com", FirstName: "F" + k, LastName: "L",
			Attributes: map[string]usersv1.AttributeValue{"team": usersv1.StringValue(prefix), "seat": usersv1.NumberValue(float64(i))}}
	}
	return out
}

// setup creates a namespace with a HubSpot provider on a fresh emulator
// that accepts duplicate emails (so only the operator can prevent them),
// and the UserSyncs.
func setup(em *hsemu.Emulator, syncs, perSync int) (string, map[string]usersv1.User) {
	return setupWith(em, syncs, perSync, nil)
}

// setupWith is setup with the provider's HubSpot options.
func setupWith(em *hsemu.Emulator, syncs, perSync int, hs *usersv1.HubSpotOptions) (string, map[string]usersv1.User) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "crash-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "hs"},
		Data: map[string][]byte{"token": []byte(token)}})).To(Succeed())
	Expect(k8s.Create(ctx, &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "hs"},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot, Endpoint: em.URL(), AllowInsecureHTTP: true,
			BatchSize:      ptr.To(int32(50)),
			CredentialsRef: usersv1.SecretKeyReference{Name: "hs", Key: "token"},
			HubSpot:        hs,
			RateLimit:      &usersv1.RateLimit{Requests: 1000, Period: metav1.Duration{Duration: time.Second}}}})).To(Succeed())
	want := map[string]usersv1.User{}
	for s := range syncs {
		us := userList(fmt.Sprintf("s%d-", s), perSync)
		for _, u := range us {
			want[u.Email] = u
		}
		Expect(k8s.Create(ctx, &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: fmt.Sprintf("team-%d", s)},
			Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hs"}}, Users: us}})).To(Succeed())
	}
	return ns.Name, want
}

func allReady(ns string) func() int {
	return func() int {
		var list usersv1.UserSyncList
		Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
		n := 0
		for i := range list.Items {
			us := &list.Items[i]
			if c := meta.FindStatusCondition(us.Status.Conditions, usersv1.ConditionReady); c != nil &&
				c.Status == metav1.ConditionTrue && us.Status.ObservedGeneration == us.Generation {
				n++
			}
		}
		return n
	}
}

// verifyExactlyOnce checks the vendor holds each declared user once, with
// its fields, and that every record points at its own user.
func verifyExactlyOnce(em *hsemu.Emulator, ns string, want map[string]usersv1.User) {
	seen := map[string]int{}
	for _, u := range em.Users() {
		email := u.Properties[hubspot.PropEmail]
		seen[email]++
		w, ok := want[email]
		Expect(ok).To(BeTrue(), "a user nobody declared: %s", email)
		Expect(u.Properties[hubspot.PropFirstName]).To(Equal(w.FirstName))
		Expect(u.Properties["team"]).To(Equal(string(w.Attributes["team"].Raw[1 : len(w.Attributes["team"].Raw)-1])))
	}
	var dup []string
	for email, n := range seen {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", email, n))
		}
	}
	Expect(dup).To(BeEmpty(), "users created more than once")
	Expect(seen).To(HaveLen(len(want)), "users missing at the vendor")

	var list usersv1.UserSyncList
	Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	for i := range list.Items {
		for _, r := range list.Items[i].Status.Results {
			u, ok := em.UserByID(r.ExternalID)
			Expect(ok).To(BeTrue(), "record %s points at no user", r.Key)
			Expect(u.Properties[hubspot.PropEmail]).To(Equal(r.Key + "@example.com"))
		}
	}
}

var _ = Describe("The operator killed mid-sync", func() {
	It("creates every user exactly once with its attributes, however often it is SIGKILLed", func() {
		em := hsemu.New(hsemu.Options{Tokens: map[string][]string{token: hubspot.DefaultScopes},
			RateLimit: -1, Latency: 40 * time.Millisecond, DuplicateEmails: true})
		em.Start()
		defer em.Close()
		ns, want := setup(em, 4, 500)
		log := filepath.Join(GinkgoT().TempDir(), "operator.log")

		const kills = 10
		rng := rand.New(rand.NewPCG(uint64(GinkgoRandomSeed()), 7))
		for i := range kills {
			op := startOperator(log)
			time.Sleep(time.Duration(300+rng.IntN(2200)) * time.Millisecond)
			op.kill()
			GinkgoWriter.Printf("kill %d: %d users at the vendor, %d UserSyncs ready\n", i+1, len(em.Users()), allReady(ns)())
		}
		op := startOperator(log)
		defer op.kill()
		Eventually(allReady(ns), 120*time.Second, time.Second).Should(Equal(4), func() string {
			b, _ := os.ReadFile(log)
			s := string(b)
			if len(s) > 4000 {
				s = s[len(s)-4000:]
			}
			return s
		})
		AddReportEntry("SIGKILLs survived", kills)
		verifyExactlyOnce(em, ns, want)
		GinkgoWriter.Printf("creates sent: %d calls, %d searches (lookups after uncertain creates)\n",
			em.Calls(hsemu.EndpointCreate), em.Calls(hsemu.EndpointSearch))
	})

	It("creates every user exactly once when HubSpot's search trails creates and the operator is SIGKILLed", func() {
		// Lookups search (emails are not unique), and search shows a user
		// only 3 s after its create: a restart must not trust a search
		// that finds nothing before searchIndexDelay (5 s) has passed
		// since the creates a killed operator may have sent.
		em := hsemu.New(hsemu.Options{Tokens: map[string][]string{token: hubspot.DefaultScopes},
			RateLimit: -1, Latency: 40 * time.Millisecond, DuplicateEmails: true, SearchIndexDelay: 3 * time.Second})
		em.Start()
		defer em.Close()
		ns, want := setupWith(em, 2, 400, &usersv1.HubSpotOptions{SearchIndexDelay: &metav1.Duration{Duration: 5 * time.Second}})
		log := filepath.Join(GinkgoT().TempDir(), "operator.log")

		const kills = 5
		rng := rand.New(rand.NewPCG(uint64(GinkgoRandomSeed()), 11))
		for i := range kills {
			op := startOperator(log)
			time.Sleep(time.Duration(1500+rng.IntN(2500)) * time.Millisecond)
			op.kill()
			GinkgoWriter.Printf("kill %d: %d users at the vendor, %d UserSyncs ready\n", i+1, len(em.Users()), allReady(ns)())
		}
		op := startOperator(log)
		defer op.kill()
		Eventually(allReady(ns), 120*time.Second, time.Second).Should(Equal(2), func() string {
			var list usersv1.UserSyncList
			Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
			reasons := map[string]int{}
			msg := ""
			for _, us := range list.Items {
				for _, r := range us.Status.Results {
					reasons[string(r.State)+"/"+r.Reason+"/"+r.Action]++
					msg = r.Message
				}
			}
			p := &usersv1.UserProvider{}
			Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "hs"}, p)).To(Succeed())
			return fmt.Sprintf("records %v (last message %q); intents %v; %d users, %d searches", reasons, msg,
				p.Status.CreatesInFlight, len(em.Users()), em.Calls(hsemu.EndpointSearch))
		})
		verifyExactlyOnce(em, ns, want)
		GinkgoWriter.Printf("creates sent: %d calls, %d searches\n", em.Calls(hsemu.EndpointCreate), em.Calls(hsemu.EndpointSearch))
	})

	It("converges without duplicates when the API server goes away and comes back mid-sync", func() {
		em := hsemu.New(hsemu.Options{Tokens: map[string][]string{token: hubspot.DefaultScopes},
			RateLimit: -1, Latency: 40 * time.Millisecond, DuplicateEmails: true})
		em.Start()
		defer em.Close()
		ns, want := setup(em, 2, 500)

		// The operator reaches the API server through a proxy that can cut
		// it off: every connection and watch dropped, new ones refused.
		host := strings.TrimPrefix(testEnv.Config.Host, "https://")
		proxy, err := newOutageProxy(host)
		Expect(err).NotTo(HaveOccurred())
		defer proxy.close()
		kc, err := os.ReadFile(kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		proxied := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(proxied, []byte(strings.ReplaceAll(string(kc), host, proxy.addr)), 0o600)).To(Succeed())

		op := startOperatorWith(filepath.Join(GinkgoT().TempDir(), "operator.log"), proxied)
		defer op.kill()
		for i := range 3 {
			time.Sleep(time.Duration(700+400*i) * time.Millisecond)
			Expect(proxy.outage(3 * time.Second)).To(Succeed())
			GinkgoWriter.Printf("outage %d over: %d users at the vendor\n", i+1, len(em.Users()))
		}
		Eventually(allReady(ns), 120*time.Second, time.Second).Should(Equal(2))
		verifyExactlyOnce(em, ns, want)
	})
})

var _ = Describe("Two replicas with leader election", func() {
	It("has one leader write at a time, and the other takes over within the lease when the leader is killed", func() {
		em := hsemu.New(hsemu.Options{Tokens: map[string][]string{token: hubspot.DefaultScopes},
			RateLimit: -1, Latency: 40 * time.Millisecond, DuplicateEmails: true})
		em.Start()
		defer em.Close()
		ns, want := setup(em, 3, 500)
		dir := GinkgoT().TempDir()
		elect := []string{"--leader-elect", "--leader-election-namespace=" + ns, "--leader-election-id=crash-" + ns,
			"--leader-election-lease-duration=4s"}
		logA, logB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
		a := startOperatorWith(logA, kubeconfig, elect...)
		Eventually(func() string { b, _ := os.ReadFile(logA); return string(b) }, 20*time.Second).
			Should(MatchRegexp("(?i)successfully acquired lease"))
		b := startOperatorWith(logB, kubeconfig, elect...)
		defer b.kill()

		// While A leads, B waits and writes nothing.
		Eventually(func() int { return len(em.Users()) }, 30*time.Second, 50*time.Millisecond).
			Should(BeNumerically(">", 0), "A is syncing")
		time.Sleep(500 * time.Millisecond)
		before := len(em.Users())
		bLog, _ := os.ReadFile(logB)
		Expect(string(bLog)).NotTo(MatchRegexp("(?i)successfully acquired lease"))
		Expect(string(bLog)).NotTo(ContainSubstring("Starting workers"))

		killed := time.Now()
		a.kill()
		Eventually(func() string { b, _ := os.ReadFile(logB); return string(b) }, 20*time.Second, 200*time.Millisecond).
			Should(MatchRegexp("(?i)successfully acquired lease"))
		took := time.Since(killed)
		GinkgoWriter.Printf("B took over %s after A was killed (lease 4s); %d users were at the vendor\n", took.Round(100*time.Millisecond), before)
		AddReportEntry("takeover after SIGKILL of the leader", took.String())
		Expect(took).To(BeNumerically("<", 10*time.Second))
		Eventually(allReady(ns), 120*time.Second, time.Second).Should(Equal(3))
		verifyExactlyOnce(em, ns, want)
	})
})
