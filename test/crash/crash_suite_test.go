// Package crash kills the operator process (SIGKILL) and restarts the API
// server while it syncs, then checks that every user exists exactly once at
// the vendor with its declared attributes.
package crash

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/usersync/usersync-operator/internal/testenv"
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

var _ = BeforeSuite(func() {
	dir := GinkgoT().TempDir()
	binary = filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", binary, "github.com/usersync/usersync-operator")
	build.Stdout, build.Stderr = GinkgoWriter, GinkgoWriter
	Expect(build.Run()).To(Succeed(), "building the operator")

	testEnv = testenv.New()
	// kube-apiserver drains its watches before it exits.
	testEnv.ControlPlaneStopTimeout = 2 * time.Minute
	var err error
	_, k8s, err = testenv.Start(testEnv)
	Expect(err).NotTo(HaveOccurred())

	kubeconfig, err = testenv.WriteKubeconfig(testEnv, "operator", dir)
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
