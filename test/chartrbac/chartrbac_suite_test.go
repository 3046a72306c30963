// Package chartrbac proves the Helm chart's RBAC by running the operator
// with it: the chart is rendered with `helm template`, its ServiceAccount,
// Roles, ClusterRoles and bindings are applied to a real kube-apiserver
// (envtest, which authorizes with RBAC), and the operator binary runs with
// the Deployment's arguments and a token of that ServiceAccount (the
// TokenRequest API), so every call it makes is allowed or denied by the
// chart alone. A sync with two vendors must converge without a single
// "forbidden" in the operator's log, cluster-wide and with watchNamespaces;
// and the same run with one rule taken out of the chart must be caught.
// The helm binary comes from $HELM, as for test/chart; without it the tests
// are skipped.
package chartrbac

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/usersync/usersync-operator/internal/testenv"
)

var (
	helm      string
	testEnv   *envtest.Environment
	adminCfg  *rest.Config
	k8s       client.Client
	clientset *kubernetes.Clientset
	binary    string
)

func TestChartRBAC(t *testing.T) {
	helm = os.Getenv("HELM")
	if helm == "" {
		t.Skip("HELM is not set: `make test` (and `make helm-test`) install helm into bin/ and set HELM; " +
			"or run HELM=/path/to/helm go test ./test/chartrbac/...")
	}
	RegisterFailHandler(Fail)
	RunSpecs(t, "Chart RBAC Suite")
}

var _ = BeforeSuite(func() {
	binary = filepath.Join(GinkgoT().TempDir(), "manager")
	build := exec.Command("go", "build", "-o", binary, "github.com/usersync/usersync-operator")
	build.Stdout, build.Stderr = GinkgoWriter, GinkgoWriter
	Expect(build.Run()).To(Succeed(), "building the operator")

	testEnv = testenv.New()
	testEnv.ControlPlaneStopTimeout = time.Minute
	var err error
	adminCfg, k8s, err = testenv.Start(testEnv)
	Expect(err).NotTo(HaveOccurred())
	clientset, err = kubernetes.NewForConfig(adminCfg)
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
