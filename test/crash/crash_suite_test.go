// Package crash kills the operator process (SIGKILL) and restarts the API
// server while it syncs, then checks that every user exists exactly once at
// the vendor with its declared attributes.
package crash

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

var (
	testEnv    *envtest.Environment
	k8s        client.Client
	binary     string
	kubeconfig string
)

func TestCrash(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Crash Suite")
}

func assetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	matches, _ := filepath.Glob(filepath.Join("..", "..", "bin", "k8s", "*", "kube-apiserver"))
	if len(matches) == 0 {
		return ""
	}
	return filepath.Dir(matches[0])
}

var _ = BeforeSuite(func() {
	dir := GinkgoT().TempDir()
	binary = filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", binary, "github.com/usersync/usersync-operator")
	build.Stdout, build.Stderr = GinkgoWriter, GinkgoWriter
	Expect(build.Run()).To(Succeed(), "building the operator")

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assetsDir(),
		// kube-apiserver drains its watches before it exits.
		ControlPlaneStopTimeout: 2 * time.Minute,
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred(), "start kube-apiserver and etcd: run 'make envtest' or set KUBEBUILDER_ASSETS")
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(usersv1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	user, err := testEnv.AddUser(envtest.User{Name: "operator", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kubeconfig = filepath.Join(dir, "kubeconfig")
	Expect(os.WriteFile(kubeconfig, kc, 0o600)).To(Succeed())
})

var _ = AfterSuite(func() {
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
