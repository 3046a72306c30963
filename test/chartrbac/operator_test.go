package chartrbac

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// leaseName is the operator's default --leader-election-id, which the chart
// does not override.
const leaseName = "usersync-operator.users.usersync.io"

// serviceAccountKubeconfig writes a kubeconfig that authenticates with a
// token the TokenRequest API issues for the ServiceAccount namespace/name
// (what the kubelet mounts into the operator's Pod), and checks that the
// API server takes it for that ServiceAccount.
func serviceAccountKubeconfig(namespace, name string) string {
	GinkgoHelper()
	tr, err := clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred(), "TokenRequest for ServiceAccount %s/%s", namespace, name)

	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: adminCfg.Host, CertificateAuthorityData: adminCfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: name, Namespace: namespace}
	kc.CurrentContext = name
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(clientcmd.WriteToFile(*kc, path)).To(Succeed())

	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	Expect(err).NotTo(HaveOccurred())
	cs, err := kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	Expect(review.Status.UserInfo.Username).To(Equal("system:serviceaccount:" + namespace + ":" + name))
	Expect(review.Status.UserInfo.Groups).NotTo(ContainElement("system:masters"))
	return path
}

// operator is one run of the operator binary.
type operator struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

// startOperator runs the operator binary with args and kubeconfig; its
// output goes to a log file that stopOperator attaches to the spec's report.
func startOperator(kubeconfig string, args []string) *operator {
	GinkgoHelper()
	log := filepath.Join(GinkgoT().TempDir(), "operator.log")
	f, err := os.Create(log)
	Expect(err).NotTo(HaveOccurred())
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = f, f
	Expect(cmd.Start()).To(Succeed())
	o := &operator{cmd: cmd, log: log, done: make(chan error, 1)}
	go func() { o.done <- cmd.Wait(); _ = f.Close() }()
	GinkgoWriter.Printf("operator %s\n", strings.Join(args, " "))
	DeferCleanup(o.stop)
	return o
}

// stop ends the operator as the kubelet would (SIGTERM, then SIGKILL).
func (o *operator) stop() {
	if o.cmd.ProcessState != nil {
		return
	}
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-o.done:
		GinkgoWriter.Printf("operator stopped (SIGTERM): %v\n", err)
	case <-time.After(10 * time.Second):
		_ = o.cmd.Process.Kill()
		<-o.done //nolint:errcheck // killed: its exit error is expected
	}
	if CurrentSpecReport().Failed() {
		b, _ := os.ReadFile(o.log)
		AddReportEntry("operator log", string(b))
	}
}

func (o *operator) output() string {
	b, err := os.ReadFile(o.log)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

// forbidden matches an API server's RBAC denial as the operator logs it,
// whoever logs it (controller-runtime's reflectors and reconcile errors,
// the events broadcaster, the leader elector), in JSON or klog's text.
var forbidden = regexp.MustCompile(`(?i)forbidden`)

// denials returns the lines of the operator's log that report an RBAC
// denial.
func (o *operator) denials() []string {
	var out []string
	for _, line := range strings.Split(o.output(), "\n") {
		if forbidden.MatchString(line) {
			out = append(out, line)
		}
	}
	return out
}

// expectLeader checks that the operator holds the leader-election Lease in
// namespace.
func expectLeader(namespace string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var lease coordinationv1.Lease
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: leaseName}, &lease)).To(Succeed())
		g.Expect(ptr.Deref(lease.Spec.HolderIdentity, "")).NotTo(BeEmpty(), "the Lease has no holder")
		g.Expect(lease.Spec.RenewTime).NotTo(BeNil())
		g.Expect(time.Since(lease.Spec.RenewTime.Time)).To(BeNumerically("<", 15*time.Second), "the Lease is not renewed")
	}, 10*time.Second, 200*time.Millisecond).Should(Succeed())
}
