//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
)

// dumpDiagnostics writes what the cluster says about a failure to the
// spec's output and to logs/diagnostics.txt (kept after the run): Nodes,
// Pods, events, the operator's Pods described and their logs, and the last
// lines of the kubelet's and containerd's logs.
func (c *cluster) dumpDiagnostics() {
	f, err := os.OpenFile(c.path("logs", "diagnostics.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	w := io.MultiWriter(f, GinkgoWriter)
	_, _ = fmt.Fprintf(w, "\n===== diagnostics at %s =====\n", time.Now().Format(time.RFC3339))
	if c.kubeconfig != "" {
		for _, args := range [][]string{
			{"get", "nodes,pods,leases", "-A", "-o", "wide"},
			{"get", "events", "-A", "--sort-by=.lastTimestamp"},
			{"describe", "pods", "-n", releaseNamespace},
			{"logs", "-n", releaseNamespace, "-l", "app.kubernetes.io/name=usersync-operator", "--all-containers", "--prefix", "--tail=60"},
			{"get", "usersyncs,userproviders", "-A", "-o", "yaml"},
		} {
			c.kubectl(w, args...)
		}
	}
	for _, name := range []string{"kubelet", "containerd"} {
		_, _ = fmt.Fprintf(w, "\n--- last lines of logs/%s.log ---\n", name)
		tail(w, c.path("logs", name+".log"), 40)
	}
}

func (c *cluster) kubectl(w io.Writer, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = fmt.Fprintf(w, "\n--- kubectl %s ---\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, filepath.Join(c.cfg.k8sDir, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		_, _ = fmt.Fprintln(w, err)
	}
}

func tail(w io.Writer, path string, n int) {
	f, err := os.Open(path)
	if err != nil {
		_, _ = fmt.Fprintln(w, err)
		return
	}
	defer func() { _ = f.Close() }()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	_, _ = fmt.Fprintln(w, strings.Join(lines, "\n"))
}
