package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/usersync/usersync-operator/internal/app"
)

// operator is the operator running as a child process.
type operator struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
	metrics string        // http://127.0.0.1:<port>/metrics
	log     string
	logFile *os.File
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startOperator starts the operator binary for one point, serving only the
// point's namespace. profileDir, when not empty, runs the profiled operator
// (-pprof) with the CPU profile phases named by phases ("": the steady
// state).
func startOperator(cfg *config, binary, kubeconfig, workDir, namespace, profileDir, phases string) (*operator, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(port),
		"--health-probe-bind-address=0",
		"--resync-interval=" + cfg.resync.String(),
		"--workers=" + strconv.Itoa(cfg.workers),
		"--deletion-guard-count=0",
		"--deletion-guard-percent=0",
		"--watch-namespaces=" + namespace,
	}
	o := &operator{metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port), log: filepath.Join(workDir, "operator-"+namespace+".log"),
		done: make(chan struct{})}
	if o.logFile, err = os.Create(o.log); err != nil {
		return nil, err
	}
	o.cmd = exec.Command(binary, args...)
	o.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "GOMEMLIMIT="+cfg.goMemLimit, app.MemoryLimitEnv+"="+cfg.memoryLimit)
	if profileDir != "" {
		o.cmd.Env = append(o.cmd.Env, profileDirEnvVar+"="+profileDir)
		if phases != "" {
			o.cmd.Env = append(o.cmd.Env, profilePhasesEnvVar+"="+phases)
		}
	}
	var w io.Writer = o.logFile
	if cfg.verbose {
		w = io.MultiWriter(o.logFile, os.Stderr)
	}
	o.cmd.Stdout, o.cmd.Stderr = w, w
	if err := o.cmd.Start(); err != nil {
		_ = o.logFile.Close()
		return nil, fmt.Errorf("starting the operator: %w", err)
	}
	go func() { o.waitErr = o.cmd.Wait(); _ = o.logFile.Close(); close(o.done) }()
	return o, nil
}

// stop sends SIGTERM and waits, then SIGKILL.
func (o *operator) stop() {
	select {
	case <-o.done:
		return
	default:
	}
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-o.done:
	case <-time.After(30 * time.Second):
		_ = o.cmd.Process.Kill()
		<-o.done
	}
}

// exited reports an error when the process is gone.
func (o *operator) exited() error {
	select {
	case <-o.done:
		return fmt.Errorf("the operator exited (%v); its log: %s", o.waitErr, o.log)
	default:
		return nil
	}
}

// cpuSeconds is utime+stime of the process so far.
func (o *operator) cpuSeconds() (float64, error) {
	_, _, cpu, err := procStat(o.cmd.Process.Pid)
	return cpu, err
}

// peakRSS is VmHWM, the peak resident set size, in bytes.
func (o *operator) peakRSS() (int64, error) { return o.statusBytes("VmHWM") }

// rss is VmRSS, the resident set size now, in bytes.
func (o *operator) rss() (int64, error) { return o.statusBytes("VmRSS") }

func (o *operator) statusBytes(field string) (int64, error) {
	v := procField(fmt.Sprintf("/proc/%d/status", o.cmd.Process.Pid), field)
	kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", field, v, err)
	}
	return kb << 10, nil
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux ≥ 4.0: "5" to
// /proc/<pid>/clear_refs), so that the next peakRSS is the peak of what
// follows alone.
func (o *operator) resetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", o.cmd.Process.Pid), []byte("5"), 0)
}

// metricsSnapshot is one scrape of the operator's /metrics.
type metricsSnapshot map[string]*dto.MetricFamily

// metricsClient asks for uncompressed metrics: gzip would add to the
// operator's CPU figures.
var metricsClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}

func (o *operator) scrape(ctx context.Context) (metricsSnapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.metrics, nil)
	if err != nil {
		return nil, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", o.metrics, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// matching returns the series of a family whose labels match.
func (m metricsSnapshot) matching(name string, match map[string]string) []*dto.Metric {
	mf, ok := m[name]
	if !ok {
		return nil
	}
	var out []*dto.Metric
next:
	for _, mt := range mf.GetMetric() {
		for k, v := range match {
			if labelOf(mt, k) != v {
				continue next
			}
		}
		out = append(out, mt)
	}
	return out
}

// sum adds up the counters (or histogram sample counts, or gauges) of a
// family whose labels match.
func (m metricsSnapshot) sum(name string, match map[string]string) float64 {
	total := 0.0
	for _, mt := range m.matching(name, match) {
		switch {
		case mt.Counter != nil:
			total += mt.GetCounter().GetValue()
		case mt.Histogram != nil:
			total += float64(mt.GetHistogram().GetSampleCount())
		case mt.Gauge != nil:
			total += mt.GetGauge().GetValue()
		}
	}
	return total
}

// histSum adds up the sums of a histogram family's series whose labels
// match (seconds, or bytes for a size histogram).
func (m metricsSnapshot) histSum(name string, match map[string]string) float64 {
	total := 0.0
	for _, mt := range m.matching(name, match) {
		total += mt.GetHistogram().GetSampleSum()
	}
	return total
}

func labelOf(mt *dto.Metric, name string) string {
	for _, lp := range mt.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// requestsByMethod adds up the operator's Kubernetes API requests
// (rest_client_requests_total) by method.
func (m metricsSnapshot) requestsByMethod() map[string]float64 {
	out := map[string]float64{}
	mf, ok := m["rest_client_requests_total"]
	if !ok {
		return out
	}
	for _, mt := range mf.GetMetric() {
		for _, lp := range mt.GetLabel() {
			if lp.GetName() == "method" {
				out[lp.GetValue()] += mt.GetCounter().GetValue()
			}
		}
	}
	return out
}

// apiWrites is the number of POST, PUT, PATCH and DELETE requests the
// operator made from m0 to m1.
func apiWrites(m0, m1 metricsSnapshot) float64 {
	before, after := m0.requestsByMethod(), m1.requestsByMethod()
	n := 0.0
	for _, method := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		n += after[method] - before[method]
	}
	return n
}

// profilePhasesEnvVar names the CPU profiles a profiled operator writes
// after each SIGUSR1 (comma-separated; default "steady"): the first
// SIGUSR1 ends cpu-converge.pprof and starts cpu-<first>.pprof, the next
// ends it and starts cpu-<second>.pprof, and so on; once the names run out
// a SIGUSR1 only ends the profile under way.
const profilePhasesEnvVar = "USERSYNC_BENCH_PROFILE_PHASES"

// runProfiledManager is the operator as main.go wires it, with a CPU
// profile of everything up to SIGUSR1 (convergence), a heap profile at
// SIGUSR1, and a CPU profile from SIGUSR1 to SIGTERM (steady state), or
// one per phase of profilePhasesEnvVar.
func runProfiledManager(dir string, args []string) int {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	var metricsAddr, probeAddr string
	opts := app.DefaultOptions()
	fs.StringVar(&metricsAddr, "metrics-bind-address", "0", "")
	fs.StringVar(&probeAddr, "health-probe-bind-address", "0", "")
	opts.BindFlags(fs)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("profiled-manager")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Error(err, "profile directory")
		return 1
	}
	startCPU := func(name string) func() {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			log.Error(err, "cpu profile")
			return func() {}
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Error(err, "cpu profile")
			_ = f.Close()
			return func() {}
		}
		return func() { pprof.StopCPUProfile(); _ = f.Close() }
	}
	var mu sync.Mutex // guards stopCPU
	stopCPU := startCPU("cpu-converge.pprof")
	defer func() { mu.Lock(); stopCPU(); mu.Unlock() }()

	cacheOpts, err := opts.CacheOptions()
	if err != nil {
		log.Error(err, "invalid flags")
		return 2
	}
	if limit, err := app.SetMemoryLimit(); err != nil {
		log.Error(err, "invalid memory limit")
		return 2
	} else if limit > 0 {
		log.Info("Go memory limit set from the container's", "bytes", limit)
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 app.NewScheme(),
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
	})
	if err != nil {
		log.Error(err, "unable to create the manager")
		return 1
	}
	ctx := ctrl.SetupSignalHandler()
	if err := app.Setup(ctx, mgr, opts); err != nil {
		log.Error(err, "unable to set up the sync engine")
		return 1
	}
	go writePeakHeap(ctx, dir)
	phases := []string{"steady"}
	if v := os.Getenv(profilePhasesEnvVar); v != "" {
		phases = strings.Split(v, ",")
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		n := 0
		for range usr1 {
			mu.Lock()
			stopCPU()
			stopCPU = func() {}
			if n == 0 {
				if f, err := os.Create(filepath.Join(dir, "heap-converged.pprof")); err == nil {
					runtime.GC()
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					_ = f.Close()
				}
			}
			if n < len(phases) {
				stopCPU = startCPU("cpu-" + phases[n] + ".pprof")
			}
			n++
			mu.Unlock()
		}
	}()
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "the manager stopped")
		return 1
	}
	return 0
}

// writePeakHeap keeps heap-peak.pprof the heap profile of the largest live
// heap seen (the heap the last garbage collection kept, polled every
// 250 ms): where the memory of a backlog's peak goes, which a profile at
// convergence no longer shows.
func writePeakHeap(ctx context.Context, dir string) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		live := sample[0].Value.Uint64()
		if live < peak+4<<20 {
			continue
		}
		peak = live
		if f, err := os.Create(filepath.Join(dir, "heap-peak.pprof")); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			_ = f.Close()
		}
	}
}
