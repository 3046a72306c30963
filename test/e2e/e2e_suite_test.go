//go:build e2e

// Package e2e runs the operator as real Pods on a real node (make e2e,
// kubebuilder's test-e2e without kind): it starts a one-node cluster of
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
// and a kubelet, imports the image of `make image`, installs the chart with
// Helm and checks the Deployment, its probes, the leader Lease and its
// fail-over, /metrics, and UserSyncs against the HubSpot, Propel and user.com
// emulators.
//
// hack/e2e/run.sh runs it as root inside a network namespace it creates and
// cleans up after it; the build tag keeps `go test ./...` from running it.
package e2e

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// config is what hack/e2e/run.sh passes in E2E_* variables.
type config struct {
	k8sDir      string // etcd, kube-apiserver, kubelet, ... (hack/e2e/setup-node.sh)
	helm        string
	image       string // the operator image's reference, as `make image` tagged it
	imageTar    string // its docker-archive
	pause       string // the static pause binary (hack/e2e/pause)
	runDir      string // everything the cluster writes
	nodeIP      string // the node's address inside the network namespace
	podCIDR     string
	serviceCIDR string
	apiPort     int
	cgroupRoot  string // the kubelet's cgroupRoot
	chart       string
}

func configFromEnv() (config, error) {
	c := config{
		k8sDir: os.Getenv("E2E_K8S_DIR"), helm: os.Getenv("E2E_HELM"),
		image: os.Getenv("E2E_IMAGE"), imageTar: os.Getenv("E2E_IMAGE_TAR"),
		pause: os.Getenv("E2E_PAUSE"), runDir: os.Getenv("E2E_RUN_DIR"),
		nodeIP: os.Getenv("E2E_NODE_IP"), podCIDR: os.Getenv("E2E_POD_CIDR"),
		serviceCIDR: os.Getenv("E2E_SERVICE_CIDR"), cgroupRoot: os.Getenv("E2E_CGROUP_ROOT"),
		chart: os.Getenv("E2E_CHART"),
	}
	for name, v := range map[string]string{
		"E2E_K8S_DIR": c.k8sDir, "E2E_HELM": c.helm, "E2E_IMAGE": c.image, "E2E_IMAGE_TAR": c.imageTar,
		"E2E_PAUSE": c.pause, "E2E_RUN_DIR": c.runDir, "E2E_NODE_IP": c.nodeIP, "E2E_POD_CIDR": c.podCIDR,
		"E2E_SERVICE_CIDR": c.serviceCIDR, "E2E_CGROUP_ROOT": c.cgroupRoot, "E2E_CHART": c.chart,
	} {
		if v == "" {
			return c, fmt.Errorf("%s is not set: run this test with `make e2e` (hack/e2e/run.sh), as root", name)
		}
	}
	port, err := strconv.Atoi(os.Getenv("E2E_API_PORT"))
	if err != nil {
		return c, fmt.Errorf("E2E_API_PORT: %w", err)
	}
	c.apiPort = port
	if os.Geteuid() != 0 {
		return c, fmt.Errorf("needs root (containerd, the kubelet)")
	}
	return c, nil
}

var node *cluster

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Real-node e2e Suite")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	cfg, err := configFromEnv()
	Expect(err).NotTo(HaveOccurred())
	node = &cluster{cfg: cfg}
	DeferCleanup(func() {
		// Runs even when a start step failed half-way, and on an
		// interrupt: every process started so far is stopped.
		node.stop()
	})
	Expect(node.start(ctx)).To(Succeed())
}, NodeTimeout(8*time.Minute))

// After a failed spec, what the cluster says about it.
var _ = ReportAfterEach(func(r SpecReport) {
	if r.Failed() && node != nil {
		node.dumpDiagnostics()
	}
})
