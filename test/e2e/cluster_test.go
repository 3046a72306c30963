//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/usersync/usersync-operator/internal/testenv"
)

// nodeName is the Node's name; the kubelet's token names it too
// (system:node:<name>), as the Node authorizer wants.
const nodeName = "usersync-e2e"

// Local addresses inside the network namespace (nothing else listens there).
const (
	etcdClientURL = "http://127.0.0.1:2379"
	etcdPeerURL   = "http://127.0.0.1:2380"
	kubeletPort   = 10250
)

// cluster is the one-node cluster: its processes, in start order, and how
// to reach its API server.
type cluster struct {
	cfg   config
	procs []*process
	pki   pki
	// kubeconfig is the admin's (system:masters), for Helm and kubectl.
	kubeconfig string
	rest       *rest.Config
	k8s        client.Client
	sock       string // containerd's socket
}

// process is one started binary; its output goes to <runDir>/logs/<name>.log.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (c *cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.cfg.runDir}, elem...)...)
}

func (c *cluster) apiURL() string {
	return "https://" + c.cfg.nodeIP + ":" + strconv.Itoa(c.cfg.apiPort)
}

// run starts a process in a process group of its own (a Ctrl-C reaches the
// test, which stops them in order, not them all at once).
func (c *cluster) run(name, bin string, args ...string) (*process, error) {
	f, err := os.Create(c.path("logs", name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	_, _ = fmt.Fprintf(GinkgoWriter, "started %s, PID %d\n", name, cmd.Process.Pid)
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process's PID, and SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_, _ = fmt.Fprintf(GinkgoWriter, "%s did not stop within %s: SIGKILL\n", p.name, grace)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_, _ = fmt.Fprintf(GinkgoWriter, "stopped %s (PID %d) in %s\n", p.name, p.cmd.Process.Pid, time.Since(start).Round(time.Millisecond))
}

// waitFor polls check until it succeeds, the timeout passes, or p exits.
func waitFor(ctx context.Context, what string, timeout time.Duration, p *process, check func(context.Context) error) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			_, _ = fmt.Fprintf(GinkgoWriter, "%s after %s\n", what, time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s: %s exited (%v); see its log %s: %w", what, p.name, p.err, filepath.Join("logs", p.name+".log"), last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not after %s: %w", what, timeout, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// start starts the cluster, each part once the one it needs answers.
func (c *cluster) start(ctx context.Context) error {
	for _, d := range []string{"logs", "etcd", "pki", "containerd", "cni/net.d", "kubelet", "logs/pods", "helm"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	var err error
	if c.pki, err = newPKI(c.path("pki"), c.cfg); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := c.startControlPlane(ctx); err != nil {
		return err
	}
	if err := c.startContainerd(ctx); err != nil {
		return err
	}
	if err := c.importImages(ctx); err != nil {
		return err
	}
	if err := c.startControllers(ctx); err != nil {
		return err
	}
	return c.startKubelet(ctx)
}

func (c *cluster) startControlPlane(ctx context.Context) error {
	etcd, err := c.run("etcd", filepath.Join(c.cfg.k8sDir, "etcd"),
		"--name=e2e", "--data-dir="+c.path("etcd"),
		"--listen-client-urls="+etcdClientURL, "--advertise-client-urls="+etcdClientURL,
		"--listen-peer-urls="+etcdPeerURL, "--initial-advertise-peer-urls="+etcdPeerURL,
		"--initial-cluster=e2e="+etcdPeerURL, "--unsafe-no-fsync=true", "--log-level=warn")
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "etcd is healthy", time.Minute, etcd, httpOK(http.DefaultClient, etcdClientURL+"/health")); err != nil {
		return err
	}
	apiserver, err := c.run("kube-apiserver", filepath.Join(c.cfg.k8sDir, "kube-apiserver"),
		"--etcd-servers="+etcdClientURL,
		// The node's address: the Pods reach it through the kubernetes
		// Service's DNAT rule, the test and the kubelet directly.
		"--bind-address="+c.cfg.nodeIP, "--advertise-address="+c.cfg.nodeIP,
		"--secure-port="+strconv.Itoa(c.cfg.apiPort),
		"--tls-cert-file="+c.pki.servingCert, "--tls-private-key-file="+c.pki.servingKey,
		"--token-auth-file="+c.pki.tokens,
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--service-cluster-ip-range="+c.cfg.serviceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+c.pki.saKey, "--service-account-signing-key-file="+c.pki.saKey,
		// One API server and no kube-proxy: nobody reads its Endpoints.
		"--endpoint-reconciler-type=none",
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true", "--profiling=false",
		"--cert-dir="+c.path("pki", "apiserver"))
	if err != nil {
		return err
	}
	c.kubeconfig = c.path("admin.kubeconfig")
	if err := writeKubeconfig(c.kubeconfig, c.apiURL(), c.pki.caCert, c.pki.adminToken); err != nil {
		return err
	}
	c.rest = &rest.Config{Host: c.apiURL(), BearerToken: c.pki.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.pki.caCert}, QPS: 50, Burst: 100}
	hc, err := rest.HTTPClientFor(c.rest)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "kube-apiserver is ready", 2*time.Minute, apiserver, httpOK(hc, c.apiURL()+"/readyz")); err != nil {
		return err
	}
	scheme, err := testenv.Scheme()
	if err != nil {
		return err
	}
	c.k8s, err = client.New(c.rest, client.Options{Scheme: scheme})
	return err
}

// startControllers starts kube-controller-manager (Deployments,
// ReplicaSets, ServiceAccounts, the kube-root-ca.crt ConfigMaps) and
// kube-scheduler.
func (c *cluster) startControllers(ctx context.Context) error {
	cmKubeconfig, schedKubeconfig := c.path("controller-manager.kubeconfig"), c.path("scheduler.kubeconfig")
	if err := writeKubeconfig(cmKubeconfig, c.apiURL(), c.pki.caCert, c.pki.controllerManagerToken); err != nil {
		return err
	}
	if err := writeKubeconfig(schedKubeconfig, c.apiURL(), c.pki.caCert, c.pki.schedulerToken); err != nil {
		return err
	}
	cm, err := c.run("kube-controller-manager", filepath.Join(c.cfg.k8sDir, "kube-controller-manager"),
		"--kubeconfig="+cmKubeconfig, "--authentication-kubeconfig="+cmKubeconfig, "--authorization-kubeconfig="+cmKubeconfig,
		"--root-ca-file="+c.pki.caCert, "--service-account-private-key-file="+c.pki.saKey,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10257",
		"--cert-dir="+c.path("pki", "controller-manager"), "--cluster-name=usersync-e2e")
	if err != nil {
		return err
	}
	sched, err := c.run("kube-scheduler", filepath.Join(c.cfg.k8sDir, "kube-scheduler"),
		"--kubeconfig="+schedKubeconfig, "--authentication-kubeconfig="+schedKubeconfig, "--authorization-kubeconfig="+schedKubeconfig,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259",
		"--cert-dir="+c.path("pki", "scheduler"))
	if err != nil {
		return err
	}
	insecure := insecureHTTPClient()
	if err := waitFor(ctx, "kube-controller-manager is healthy", 2*time.Minute, cm, httpOK(insecure, "https://127.0.0.1:10257/healthz")); err != nil {
		return err
	}
	return waitFor(ctx, "kube-scheduler is healthy", 2*time.Minute, sched, httpOK(insecure, "https://127.0.0.1:10259/healthz"))
}

func (c *cluster) startKubelet(ctx context.Context) error {
	kc := c.path("kubelet.kubeconfig")
	if err := writeKubeconfig(kc, c.apiURL(), c.pki.caCert, c.pki.kubeletToken); err != nil {
		return err
	}
	cfgFile := c.path("kubelet", "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(c.kubeletConfig()), 0o644); err != nil {
		return err
	}
	kubelet, err := c.run("kubelet", filepath.Join(c.cfg.k8sDir, "kubelet"),
		"--config="+cfgFile, "--kubeconfig="+kc, "--root-dir="+c.path("kubelet", "root"),
		"--hostname-override="+nodeName, "--node-ip="+c.cfg.nodeIP, "--v=2")
	if err != nil {
		return err
	}
	return waitFor(ctx, "the Node is Ready", 3*time.Minute, kubelet, func(ctx context.Context) error {
		var n corev1.Node
		if err := c.k8s.Get(ctx, client.ObjectKey{Name: nodeName}, &n); err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node Ready=%s: %s", cond.Status, cond.Message)
			}
		}
		return errors.New("node has no Ready condition yet")
	})
}

// kubeletConfig is the KubeletConfiguration. The facts behind it (cgroups
// v1, no CAP_SYS_RESOURCE) are in real-node.md of the reference notes.
func (c *cluster) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://%[3]s
imageServiceEndpoint: unix://%[3]s
# The machine's cgroups are v1 (hybrid), which kubelet 1.35+ refuses unless
# told; cgroupfs, as no systemd runs; the run's own cgroup as the root.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[4]s
cgroupsPerQOS: true
failSwapOn: false
# Lowering its own oom_score_adj needs CAP_SYS_RESOURCE, which root lacks here.
oomScoreAdj: 0
# Imported images cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
podLogsDir: %[5]s
# Anonymous access to the kubelet, inside the namespace only: the API server
# proxies kubectl logs without a client certificate, and the test reads the
# probe counters at /metrics/probes.
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
resolvConf: /etc/resolv.conf
serializeImagePulls: false
`, c.cfg.nodeIP, kubeletPort, c.sock, c.cfg.cgroupRoot, c.path("logs", "pods"))
}

// stop stops every process it started, by PID, in reverse order, after the
// Pods: controllers first (nothing recreates or schedules a Pod), then the
// Pods are deleted and the kubelet stops their containers, then the rest.
// hack/e2e/run.sh finds whatever survives in the run's cgroup.
func (c *cluster) stop() {
	byName := map[string]*process{}
	for _, p := range c.procs {
		byName[p.name] = p
	}
	for _, n := range []string{"kube-controller-manager", "kube-scheduler"} {
		if p := byName[n]; p != nil {
			p.stop(20 * time.Second)
		}
	}
	if p := byName["kubelet"]; p != nil && !p.exited() && c.k8s != nil {
		c.deleteAllPods()
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		grace := 20 * time.Second
		if c.procs[i].name == "kube-apiserver" {
			grace = time.Minute // it drains its watches first
		}
		c.procs[i].stop(grace)
	}
}

// deleteAllPods deletes every Pod and waits up to a minute for the kubelet
// to stop their containers and sandboxes.
func (c *cluster) deleteAllPods() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var pods corev1.PodList
	if err := c.k8s.List(ctx, &pods); err != nil {
		_, _ = fmt.Fprintf(GinkgoWriter, "listing the Pods to stop them: %v\n", err)
		return
	}
	for i := range pods.Items {
		_ = c.k8s.Delete(ctx, &pods.Items[i], client.GracePeriodSeconds(5))
	}
	err := waitFor(ctx, "every Pod is gone", time.Minute, nil, func(ctx context.Context) error {
		var left corev1.PodList
		if err := c.k8s.List(ctx, &left); err != nil {
			return err
		}
		if len(left.Items) > 0 {
			return fmt.Errorf("%d Pods left", len(left.Items))
		}
		return nil
	})
	if err != nil {
		_, _ = fmt.Fprintln(GinkgoWriter, err)
	}
}
