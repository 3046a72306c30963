// Package kubectl runs every kubectl command that README.md and the demo
// (hack/demo) print, with a real kubectl (hack/setup-kubectl.sh) against a
// real kube-apiserver holding the operator's CRDs, and checks what an admin
// sees: the printer columns, the category, describe.
package kubectl

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	kubectlBin string
	kubeconfig string
	cacheDir   string
	ctx        = context.Background()
)

func TestKubectl(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "kubectl Suite")
}

var _ = BeforeSuite(func() {
	// No kubectl is a failure, not a skip: the script builds one.
	setup := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "setup-kubectl.sh"))
	var stdout bytes.Buffer
	setup.Stdout, setup.Stderr = &stdout, GinkgoWriter
	Expect(setup.Run()).To(Succeed(), "hack/setup-kubectl.sh could not provide kubectl")
	kubectlBin = strings.TrimSpace(stdout.String())
	Expect(kubectlBin).To(BeAnExistingFile())

	testEnv = testenv.New()
	var err error
	_, k8s, err = testenv.Start(testEnv)
	Expect(err).NotTo(HaveOccurred())

	dir := GinkgoT().TempDir()
	kubeconfig, err = testenv.WriteKubeconfig(testEnv, "admin", dir)
	Expect(err).NotTo(HaveOccurred())
	// A discovery cache of its own: one left in ~/.kube/cache by an earlier
	// API server on the same port would hold the CRDs as they were then.
	cacheDir = filepath.Join(dir, "cache")
})

var _ = AfterSuite(func() {
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// kubectl runs kubectl with args against the test's API server and returns
// its stdout; it fails the spec, with stderr, if kubectl fails.
func kubectl(args ...string) string {
	GinkgoHelper()
	cmd := exec.Command(kubectlBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "KUBECACHEDIR="+cacheDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	Expect(cmd.Start()).To(Succeed())
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		Expect(err).NotTo(HaveOccurred(), "kubectl %s\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), stdout.String(), stderr.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		Fail("kubectl " + strings.Join(args, " ") + " did not finish in 30s")
	}
	GinkgoWriter.Printf("$ kubectl %s\n%s", strings.Join(args, " "), stdout.String())
	return stdout.String()
}
