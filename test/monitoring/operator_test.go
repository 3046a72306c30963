package monitoring

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
	"github.com/usersync/usersync-operator/internal/testenv"
)

const (
	token = "pat-monitoring-test"
	ns    = "default"
	users = 3
)

// scrapeOperator builds the operator binary, runs it against a real API
// server (envtest) and the HubSpot emulator until one UserSync is synced,
// and returns what its --metrics-bind-address serves: controller-runtime's
// metrics, Go's and the process', and the operator's own, with a series
// for every vector the sync touched.
func scrapeOperator(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	dir := t.TempDir()
	binary := filepath.Join(dir, "manager")
	if out, err := exec.Command("go", "build", "-o", binary, "github.com/usersync/usersync-operator").CombinedOutput(); err != nil {
		t.Fatalf("building the operator: %v\n%s", err, out)
	}

	env := testenv.New()
	_, k8s, err := testenv.Start(env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the API server: %v", err)
		}
	})
	kubeconfig, err := testenv.WriteKubeconfig(env, "operator", dir)
	if err != nil {
		t.Fatal(err)
	}

	em := hsemu.New(hsemu.Options{Tokens: map[string][]string{token: hubspot.DefaultScopes}})
	em.Start()
	t.Cleanup(em.Close)

	addr := freeAddr(t)
	log := filepath.Join(dir, "operator.log")
	startOperator(t, binary, kubeconfig, log, "--metrics-bind-address="+addr, "--health-probe-bind-address=0")
	apply(t, k8s, em.URL())

	// The provider's counters are stored after the loop has set the record
	// gauges: once they show every user synced, every metric of that loop
	// is in the registry.
	synced := func() bool {
		var up usersv1.UserProvider
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "hubspot"}, &up); err != nil {
			return false
		}
		c := meta.FindStatusCondition(up.Status.Conditions, usersv1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionTrue && up.Status.Synced == users
	}
	for deadline := time.Now().Add(45 * time.Second); !synced(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log)
			t.Fatalf("the provider did not sync its %d users in 45s; operator log:\n%s", users, tail(b))
		}
	}
	fams, err := scrape("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// startOperator runs the binary until the test ends.
func startOperator(t *testing.T, binary, kubeconfig, log string, args ...string) {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // killed: its exit error is expected
		_ = f.Close()
	})
}

// apply creates a HubSpot provider on the emulator, its Secret, and a
// UserSync of a few users under deletionPolicy Delete. The provider's rate
// limit (one call a second) makes its calls wait for the limiter.
func apply(t *testing.T, k8s client.Client, endpoint string) {
	t.Helper()
	ctx := context.Background()
	us := make([]usersv1.User, users)
	for i := range us {
		k := fmt.Sprintf("user%d", i)
		us[i] = usersv1.User{Key: k, Email: k + "@example.com", FirstName: "F" + k}
	}
	for _, obj := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hubspot"},
			Data: map[string][]byte{"token": []byte(token)}},
		&usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hubspot"},
			Spec: usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot, Endpoint: endpoint, AllowInsecureHTTP: true,
				CredentialsRef: usersv1.SecretKeyReference{Name: "hubspot", Key: "token"},
				RateLimit:      &usersv1.RateLimit{Requests: 1, Period: metav1.Duration{Duration: time.Second}}}},
		&usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"},
			Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hubspot"}},
				DeletionPolicy: usersv1.DeletionPolicyDelete, Users: us}},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
}

// scrape reads a metrics endpoint as Prometheus does, in the text format.
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping the operator: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
