package controller

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	"github.com/usersync/usersync-operator/internal/providers/propel"
	"github.com/usersync/usersync-operator/internal/providers/scim"
	"github.com/usersync/usersync-operator/internal/providers/usercom"
	"github.com/usersync/usersync-operator/internal/testenv"
)

var (
	testEnv    *envtest.Environment
	cfg        *rest.Config
	k8s        client.Client
	ctx        context.Context
	cancel     context.CancelFunc
	fakes      = newFakeVendors()
	testScheme *runtime.Scheme
	// metricsAddr is where the manager serves /metrics.
	metricsAddr string
	// operatorLog holds everything the operator logged.
	operatorLog syncBuffer
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

func TestController(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite")
}

var _ = BeforeSuite(func() {
	// Debug logging, kept in memory too: secrets_test.go searches it.
	logf.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(GinkgoWriter, &operatorLog)), zap.UseDevMode(true), zap.Level(zapcore.Level(-5))))
	ctx, cancel = context.WithCancel(context.TODO())
	var err error
	testScheme, err = testenv.Scheme()
	Expect(err).NotTo(HaveOccurred())
	testEnv = testenv.New()
	cfg, k8s, err = testenv.Start(testEnv)
	Expect(err).NotTo(HaveOccurred())

	metricsAddr = freeAddr()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	reg := providers.NewRegistry()
	// The engine tests that do not depend on a vendor use a recording fake:
	// providers whose endpoint is on the .fake.invalid domain get it, the
	// others the vendor package, which the e2e specs run against its
	// emulator.
	reg.Register(string(usersv1.ProviderHubSpot), fakeOr{hubspot.Factory{}})
	reg.Register(string(usersv1.ProviderPropel), fakeOr{propel.Factory{}})
	reg.Register(string(usersv1.ProviderUserCom), fakeOr{usercom.Factory{}})
	reg.Register(string(usersv1.ProviderSCIM), fakeOr{scim.Factory{}})
	r := &ProviderReconciler{
		Client:          mgr.GetClient(),
		APIReader:       mgr.GetAPIReader(),
		Registry:        reg,
		Recorder:        mgr.GetEventRecorder("usersync-operator"),
		Clock:           clock.RealClock{},
		ResyncInterval:  2 * time.Second,
		NotReadyRequeue: time.Second,
		Backoff:         planner.Backoff{Base: 200 * time.Millisecond, Max: 2 * time.Second},
		VendorTimeout:   5 * time.Second,
		LoopTimeout:     time.Minute,
		// Loops give their worker away while the rate limit refills
		// (yield.go), as the operator's do (2s there).
		YieldAfter: time.Second,
		// Small deletions in the other specs pass; guard_test.go trips it.
		DeletionGuard: &planner.DeletionGuard{MaxCount: 100, MaxPercent: 30, MinCount: 10},
	}
	Expect(r.SetupWithManager(ctx, mgr, 4)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	cancel()
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

func ptr[T any](v T) *T { return &v }

// newNamespace creates a namespace of its own for one test.
func newNamespace(labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-", Labels: labels}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func newSecret(ns, name, key, token string) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data: map[string][]byte{key: []byte(token)}}
	Expect(k8s.Create(ctx, s)).To(Succeed())
}

// getSync returns the current UserSync.
func getSync(ns, name string) *usersv1.UserSync {
	us := &usersv1.UserSync{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, us)).To(Succeed())
	return us
}

func condition(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// readyStatus returns "<status>/<reason>" of the UserSync's Ready condition.
func readyStatus(ns, name string) func() string {
	return func() string {
		us := &usersv1.UserSync{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, us); err != nil {
			return err.Error()
		}
		if us.Status.ObservedGeneration != us.Generation {
			return "stale"
		}
		c := condition(us.Status.Conditions, usersv1.ConditionReady)
		if c == nil {
			return "none"
		}
		return string(c.Status) + "/" + c.Reason
	}
}

func users(n int, prefix string) []usersv1.User {
	out := make([]usersv1.User, n)
	for i := range out {
		key := prefix + itoa(i)
		out[i] = usersv1.User{Key: key, Email: key + "@example.com", FirstName: "First" + itoa(i), LastName: "Last",
			Attributes: map[string]usersv1.AttributeValue{"team": usersv1.StringValue("core")}}
	}
	return out
}

func itoa(i int) string { return strconvItoa(i) }
