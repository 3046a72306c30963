package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/app"
)

// controlPlane is the envtest kube-apiserver and etcd, shared by every
// point (each point has its own namespace and operator).
type controlPlane struct {
	env        *envtest.Environment
	cfg        *rest.Config
	kubeconfig string // an admin kubeconfig for the operator process
	client     client.WithWatch
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run the bench inside the usersync-operator module")
	}
	return filepath.Dir(gomod), nil
}

// buildOperator builds the operator binary (go build -o <work>/manager .),
// or, for -pprof, this command itself, which runs a profiled operator when
// started with profileDirEnvVar set.
func buildOperator(ctx context.Context, root, work string, profiled bool) (string, error) {
	if profiled {
		self, err := os.Executable()
		if err != nil {
			return "", err
		}
		logf("-pprof: the operator runs as a profiled copy of this binary (%s)", self)
		return self, nil
	}
	bin := filepath.Join(work, "manager")
	logf("building the operator (go build -o %s .)", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the operator: %w", err)
	}
	return bin, nil
}

func assetsDir(root string) string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	matches, _ := filepath.Glob(filepath.Join(root, "bin", "k8s", "*", "kube-apiserver"))
	if len(matches) == 0 {
		return ""
	}
	return filepath.Dir(matches[0])
}

func startControlPlane(root, work string) (*controlPlane, error) {
	logf("starting kube-apiserver and etcd")
	env := &envtest.Environment{
		CRDDirectoryPaths:       []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:   true,
		BinaryAssetsDirectory:   assetsDir(root),
		ControlPlaneStopTimeout: 2 * time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane (set KUBEBUILDER_ASSETS=$(./hack/setup-envtest.sh)): %w", err)
	}
	cp := &controlPlane{env: env}
	fail := func(err error) (*controlPlane, error) { cp.stop(); return nil, err }
	user, err := env.AddUser(envtest.User{Name: "usersync-operator", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fail(err)
	}
	cp.kubeconfig = filepath.Join(work, "kubeconfig")
	if err := os.WriteFile(cp.kubeconfig, kc, 0o600); err != nil {
		return fail(err)
	}
	// The bench's own client: creating the UserSyncs must not be throttled
	// by client-go's default 5 QPS.
	cp.cfg = rest.CopyConfig(cfg)
	cp.cfg.QPS, cp.cfg.Burst = 1000, 2000
	cp.client, err = client.NewWithWatch(cp.cfg, client.Options{Scheme: app.NewScheme()})
	if err != nil {
		return fail(err)
	}
	return cp, nil
}

func (cp *controlPlane) stop() {
	logf("stopping the control plane")
	if err := cp.env.Stop(); err != nil {
		logf("stopping the control plane: %v", err)
	}
}

// envInfo describes the machine and the code measured.
type envInfo struct {
	cores     int
	cpuModel  string
	memory    string
	goVersion string
	commit    string
	dirty     bool
	date      time.Time
	loadAvg   string
}

func collectEnv(root string) envInfo {
	e := envInfo{cores: runtime.NumCPU(), goVersion: runtime.Version(), date: time.Now().UTC(), loadAvg: loadAvg()}
	e.cpuModel = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseFloat(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 64); err == nil {
		e.memory = fmt.Sprintf("%.1f GiB", kb/(1<<20))
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	e.commit = git("rev-parse", "--short", "HEAD")
	// Documents do not change what is measured: a run that refreshes
	// docs/benchmarks.md leaves the next one's build clean.
	e.dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs", ":!*.md") != ""
	return e
}

// procField returns the value of the first "key: value" line of a /proc
// file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg is the 1, 5 and 15 minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// controlPlaneCPU is the CPU seconds kube-apiserver and etcd (children of
// this process) have used so far: the operator shares the machine with
// them, so their load explains part of its figures.
func controlPlaneCPU() float64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	total := 0.0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ppid, cpu, err := procStat(pid)
		if err != nil || ppid != self || (comm != "kube-apiserver" && comm != "etcd") {
			continue
		}
		total += cpu
	}
	return total
}

// procStat reads a process's command name, parent and utime+stime seconds
// from /proc/<pid>/stat.
func procStat(pid int) (comm string, ppid int, cpu float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, err
	}
	s := string(b)
	// The command name may hold spaces: the fields start after its ')'.
	lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if lp < 0 || rp < lp {
		return "", 0, 0, fmt.Errorf("unexpected /proc stat %q", s)
	}
	comm = s[lp+1 : rp]
	f := strings.Fields(s[rp+1:])
	if len(f) < 13 {
		return "", 0, 0, fmt.Errorf("unexpected /proc stat %q", s)
	}
	ppid, err1 := strconv.Atoi(f[1])             // field 4
	utime, err2 := strconv.ParseFloat(f[11], 64) // field 14
	stime, err3 := strconv.ParseFloat(f[12], 64) // field 15
	if err := errors.Join(err1, err2, err3); err != nil {
		return "", 0, 0, err
	}
	return comm, ppid, (utime + stime) / clockTicks, nil
}

// scrapeAPIServer reads kube-apiserver's own /metrics (the bench's client
// is an admin): what the operator's writes cost the API server, seen from
// its side.
func (cp *controlPlane) scrapeAPIServer(ctx context.Context) (metricsSnapshot, error) {
	cs, err := kubernetes.NewForConfig(cp.cfg)
	if err != nil {
		return nil, err
	}
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("GET kube-apiserver /metrics: %w", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(raw))
}

// apiServerWork is what the API server did for the operator's UserSync
// writes over a span, from its metrics.
type apiServerWork struct {
	statusWrites float64 // PUTs and PATCHes of usersyncs/status
	otherWrites  float64 // other PATCHes and PUTs of usersyncs (finalizers)
	writeBytes   float64 // bodies of those PUTs and PATCHes (apiserver_request_body_size_bytes)
	watchBytes   float64 // UserSync watch events sent (apiserver_watch_events_sizes): each write sends the whole object to the operator's informer
	watchEvents  float64
}

func apiServerWorkBetween(m0, m1 metricsSnapshot) apiServerWork {
	us := map[string]string{"group": usersv1.GroupVersion.Group, "resource": "usersyncs"}
	with := func(kv ...string) map[string]string {
		out := maps.Clone(us)
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	// Writes are PUTs (update) and PATCHes: the operator PUTs the status
	// since 123bc15, a JSON patch before.
	writes := func(m metricsSnapshot, kv ...string) float64 {
		return m.sum("apiserver_request_total", with(append(kv, "verb", "PUT")...)) +
			m.sum("apiserver_request_total", with(append(kv, "verb", "PATCH")...))
	}
	d := func(f func(metricsSnapshot) float64) float64 { return f(m1) - f(m0) }
	w := apiServerWork{
		statusWrites: d(func(m metricsSnapshot) float64 { return writes(m, "subresource", "status") }),
		writeBytes: d(func(m metricsSnapshot) float64 {
			return m.histSum("apiserver_request_body_size_bytes", with("verb", "update")) +
				m.histSum("apiserver_request_body_size_bytes", with("verb", "patch"))
		}),
		watchBytes:  d(func(m metricsSnapshot) float64 { return m.histSum("apiserver_watch_events_sizes", us) }),
		watchEvents: d(func(m metricsSnapshot) float64 { return m.sum("apiserver_watch_events_sizes", us) }),
	}
	w.otherWrites = d(func(m metricsSnapshot) float64 { return writes(m) }) - w.statusWrites
	return w
}
