// Command bench measures the operator at scale: it starts a control plane
// (the envtest kube-apiserver and etcd from KUBEBUILDER_ASSETS), the HubSpot
// emulator in-process, and the operator binary as a child process, applies
// S UserSyncs × U users against one UserProvider, and reports how long they
// take to become Ready, how many vendor calls and Kubernetes API requests it
// took, the operator's peak RSS and CPU, and what a steady-state resync of
// the unchanged users costs. Every point runs in a fresh namespace with a
// fresh emulator and a fresh operator process, so the figures are
// independent. The verify scenario measures drift detection instead of the
// steady state: one pass reading every converged user back, and writes that
// arrive while a pass is under way (verify.go).
//
// Usage:
//
//	KUBEBUILDER_ASSETS=$(./hack/setup-envtest.sh) go run ./hack/bench [flags]
//	go run ./hack/bench -scenario all -out docs/benchmarks.md
//
// The results are printed as markdown on stdout; -out refreshes the matching
// generated block of a markdown file and leaves the rest of it alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/app"
)

// config is the command line.
type config struct {
	points        []point
	latency       time.Duration
	rateLimit     int
	rateWindow    time.Duration
	resync        time.Duration
	steadyLoops   int
	killAfter     int
	workers       int
	timeout       time.Duration
	scenario      string
	out           string
	pprofDir      string
	verbose       bool
	createWorkers int
	poll          time.Duration
	keep          bool
	goMemLimit    string
	memoryLimit   string
	verifyWrites  int
	providers     int

	explicit map[string]bool // flags given on the command line
}

// point is one measurement: syncs UserSyncs of users users each.
type point struct{ syncs, users int }

func (p point) String() string { return fmt.Sprintf("%dx%d", p.syncs, p.users) }

// total is N, the number of users at the vendor.
func (p point) total() int { return p.syncs * p.users }

const (
	defaultPoints    = "1x10,20x500,200x500"
	ratelimitPoints  = "200x500"
	ratelimitLimit   = 100
	ratelimitWindow  = 10 * time.Second
	scenarioPoints   = "points"
	scenarioRateLim  = "ratelimit"
	scenarioVerify   = "verify"
	scenarioAll      = "all"
	profileDirEnvVar = "USERSYNC_BENCH_PROFILE_DIR"
)

func main() {
	// The bench binary doubles as a profiled operator (-pprof).
	if dir := os.Getenv(profileDirEnvVar); dir != "" {
		os.Exit(runProfiledManager(dir, os.Args[1:]))
	}
	// A FlagSet of its own: controller-runtime registers -kubeconfig on
	// flag.CommandLine, which means nothing here.
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(fs.Output(), "Usage: KUBEBUILDER_ASSETS=$(./hack/setup-envtest.sh) go run ./hack/bench [flags]\n\n"+
			"Measures the operator at scale against the HubSpot emulator; see docs/benchmarks.md.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	cfg, err := parseFlags(fs, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(fs *flag.FlagSet, args []string) (*config, error) {
	c := &config{explicit: map[string]bool{}}
	var points string
	var syncs, users int
	fs.StringVar(&points, "points", defaultPoints, "Comma-separated points to measure, each SYNCSxUSERS (UserSyncs × users per UserSync, at most "+strconv.Itoa(usersv1.MaxUsers)+" users each). The ratelimit and verify scenarios default to "+ratelimitPoints+".")
	fs.IntVar(&syncs, "syncs", 200, "UserSyncs of a single point; with -users, replaces -points.")
	fs.IntVar(&users, "users", 500, "Users per UserSync of a single point; with -syncs, replaces -points.")
	fs.DurationVar(&c.latency, "latency", 20*time.Millisecond, "Latency the HubSpot emulator adds to every request.")
	fs.IntVar(&c.rateLimit, "rate-limit", 0, "Requests per -rate-window the emulator accepts (429 beyond), also set as the provider's spec.rateLimit; 0: no limit at the emulator and 10000/s on the provider. The ratelimit and verify scenarios use "+strconv.Itoa(ratelimitLimit)+".")
	fs.DurationVar(&c.rateWindow, "rate-window", ratelimitWindow, "Window of -rate-limit.")
	fs.DurationVar(&c.resync, "resync-interval", 30*time.Second, "The operator's --resync-interval (the steady-state phase waits for resync loops).")
	fs.IntVar(&c.steadyLoops, "steady-loops", 3, "Resync loops the steady-state phase measures CPU over (0 skips the phase).")
	fs.IntVar(&c.workers, "workers", 4, "The operator's --workers.")
	fs.IntVar(&c.killAfter, "kill-after-writes", 0, "SIGKILL the operator once the emulator has answered this many write calls of a point's convergence, and start it again (0: never): every user must still be at the vendor exactly once.")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "Give up on a point's convergence after this long.")
	fs.StringVar(&c.scenario, "scenario", scenarioPoints, "points: the scale points; ratelimit: "+ratelimitPoints+" users against a vendor limit of "+strconv.Itoa(ratelimitLimit)+" requests / 10s; "+
		"verify: drift detection, a pass over "+verifyPoints+" converged users and writes that arrive mid-pass, under the same limit; all: the three; "+
		"scim: "+scimPoint+" users created and updated on the SCIM emulator, with /Bulk and without (scim.go; not in all); "+
		"providers: -providers HubSpot providers of "+providersPoint+" users each, a backlog under each one's own limit (providers.go; not in all).")
	fs.IntVar(&c.verifyWrites, "verify-writes", 3, "The verify scenario: writes sent while a pass is under way (each changes one user's attribute), 0: none.")
	fs.IntVar(&c.providers, "providers", defaultProvidersCount, "The providers scenario: HubSpot providers in the one operator, each its own portal (emulator, token, rate limit) and its own roster of the point's users.")
	fs.StringVar(&c.out, "out", "", "Markdown file whose generated block(s) to write or refresh, e.g. docs/benchmarks.md.")
	fs.StringVar(&c.pprofDir, "pprof", "", "Run a profiled build of the operator (this binary, same wiring as main.go) and write CPU profiles of convergence and steady state (verify: of each pass and of the mid-pass writes) and a heap profile at convergence under this directory. Figures of such a run carry the profiler's overhead.")
	fs.BoolVar(&c.verbose, "v", false, "Copy the operator's logs to stderr.")
	fs.IntVar(&c.createWorkers, "create-workers", 4, "Goroutines creating the UserSyncs.")
	fs.DurationVar(&c.poll, "poll", 250*time.Millisecond, "How often readiness is polled.")
	fs.BoolVar(&c.keep, "keep", false, "Keep the work directory (operator logs, binary) after the run.")
	fs.StringVar(&c.goMemLimit, "gomemlimit", os.Getenv("GOMEMLIMIT"), "GOMEMLIMIT of the operator process (overrides -memory-limit); empty: none.")
	fs.StringVar(&c.memoryLimit, "memory-limit", "256Mi", "The container memory limit the operator is told of ("+app.MemoryLimitEnv+", as the Helm chart sets it from resources.limits.memory): its Go heap is kept under 85% of it. Empty: none.")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { c.explicit[f.Name] = true })
	switch c.scenario {
	case scenarioPoints, scenarioRateLim, scenarioVerify, scenarioAll, scenarioSCIM, scenarioProviders:
	default:
		return nil, fmt.Errorf("-scenario must be %s, %s, %s, %s, %s or %s", scenarioPoints, scenarioRateLim, scenarioVerify, scenarioAll, scenarioSCIM, scenarioProviders)
	}
	switch {
	case c.explicit["syncs"] || c.explicit["users"]:
		if c.explicit["points"] {
			return nil, fmt.Errorf("give either -points or -syncs/-users")
		}
		c.points = []point{{syncs, users}}
	default:
		p, err := parsePoints(points)
		if err != nil {
			return nil, err
		}
		c.points = p
	}
	for _, p := range c.points {
		if p.users > usersv1.MaxUsers {
			return nil, fmt.Errorf("point %s: a UserSync holds at most %d users (the CRD refuses more); split the roster, e.g. %dx%d",
				p, usersv1.MaxUsers, (p.total()+usersv1.MaxUsers-1)/usersv1.MaxUsers, usersv1.MaxUsers)
		}
	}
	if c.providers < 1 {
		return nil, fmt.Errorf("-providers must be ≥ 1")
	}
	if c.rateLimit < 0 || c.steadyLoops < 0 || c.killAfter < 0 || c.verifyWrites < 0 || c.workers < 1 || c.createWorkers < 1 || c.poll <= 0 || c.resync <= 0 {
		return nil, fmt.Errorf("-rate-limit, -steady-loops and -verify-writes must be ≥ 0; -workers, -create-workers, -poll and -resync-interval > 0")
	}
	if c.out != "" && c.pprofDir != "" {
		return nil, fmt.Errorf("-pprof runs carry the profiler's overhead; do not publish them with -out")
	}
	return c, nil
}

func parsePoints(s string) ([]point, error) {
	var out []point
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, b, ok := strings.Cut(strings.ToLower(f), "x")
		sy, err1 := strconv.Atoi(a)
		us, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || sy < 1 || us < 1 {
			return nil, fmt.Errorf("point %q: want SYNCSxUSERS, e.g. 20x500", f)
		}
		out = append(out, point{sy, us})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-points is empty")
	}
	return out, nil
}

// scenarioRun is one scenario's settings and results.
type scenarioRun struct {
	name       string
	points     []point
	rateLimit  int
	rateWindow time.Duration
	// backlog: the UserSyncs exist before the provider can be used, and
	// the clock starts when it can (its Secret is created).
	backlog bool
	// verify: after convergence, measure drift detection (verify.go)
	// instead of the steady state.
	verify   bool
	results  []*result
	env      envInfo
	started  time.Time
	finished time.Time
}

// begin starts the scenario's clock on the machine env describes.
func (sr *scenarioRun) begin(env envInfo) {
	sr.env, sr.started = env, time.Now()
	sr.env.date, sr.env.loadAvg = sr.started.UTC(), loadAvg()
}

// singlePoint is the point of a scenario of one (scim, providers): def,
// unless -points, -syncs or -users name another (the first).
func singlePoint(cfg *config, def string) ([]point, error) {
	if cfg.explicit["points"] || cfg.explicit["syncs"] || cfg.explicit["users"] {
		return cfg.points[:1], nil
	}
	return parsePoints(def)
}

func run(ctx context.Context, cfg *config) error {
	var runs []*scenarioRun
	if cfg.scenario == scenarioPoints || cfg.scenario == scenarioAll {
		runs = append(runs, &scenarioRun{name: scenarioPoints, points: cfg.points, rateLimit: cfg.rateLimit, rateWindow: cfg.rateWindow})
	}
	if cfg.scenario == scenarioRateLim || cfg.scenario == scenarioAll {
		runs = append(runs, limitedScenario(cfg, scenarioRateLim))
	}
	if cfg.scenario == scenarioVerify || cfg.scenario == scenarioAll {
		runs = append(runs, limitedScenario(cfg, scenarioVerify))
	}

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "usersync-bench-")
	if err != nil {
		return err
	}
	keep := cfg.keep
	defer func() {
		if keep {
			logf("work directory kept: %s", work)
			return
		}
		_ = os.RemoveAll(work)
	}()

	// The commit is the one the operator binary is built from, whatever
	// others commit while the bench runs.
	built := collectEnv(root)
	binary, err := buildOperator(ctx, root, work, cfg.pprofDir != "")
	if err != nil {
		return err
	}
	cp, err := startControlPlane(root, work)
	if err != nil {
		return err
	}
	defer cp.stop()
	single := map[string]func(context.Context, *config, *controlPlane, string, string, envInfo) (string, error){
		scenarioSCIM: runSCIM, scenarioProviders: runProviders}
	if f := single[cfg.scenario]; f != nil {
		md, err := f(ctx, cfg, cp, binary, work, built)
		if err != nil {
			keep = true
			return err
		}
		fmt.Println(md)
		if cfg.out != "" {
			return refreshDoc(cfg.out, cfg.scenario, md)
		}
		return nil
	}

	for _, sr := range runs {
		sr.begin(built)
		for _, p := range sr.points {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b := &bench{cfg: cfg, cp: cp, binary: binary, work: work, scenario: sr, point: p}
			res, err := b.run(ctx)
			if err != nil {
				keep = true
				return fmt.Errorf("point %s: %w", p, err)
			}
			if !res.converged || res.verify.failed() {
				keep = true
			}
			sr.results = append(sr.results, res)
		}
		sr.finished = time.Now()
		md := renderScenario(cfg, sr)
		fmt.Println(md)
		if cfg.out != "" {
			if err := refreshDoc(cfg.out, sr.name, md); err != nil {
				return err
			}
			logf("refreshed the %s block of %s", sr.name, cfg.out)
		}
	}
	return nil
}

// limitedScenario is a scenario under a vendor rate limit (ratelimit,
// verify): its own default points and HubSpot's 100 requests / 10 s unless
// the command line says otherwise.
func limitedScenario(cfg *config, name string) *scenarioRun {
	pts := cfg.points
	if !cfg.explicit["points"] && !cfg.explicit["syncs"] && !cfg.explicit["users"] {
		def := ratelimitPoints
		if name == scenarioVerify {
			def = verifyPoints
		}
		pts, _ = parsePoints(def)
	}
	r := &scenarioRun{name: name, points: pts, rateLimit: ratelimitLimit, rateWindow: ratelimitWindow,
		backlog: name == scenarioRateLim, verify: name == scenarioVerify}
	if cfg.explicit["rate-limit"] && cfg.rateLimit > 0 {
		r.rateLimit = cfg.rateLimit
	}
	if cfg.explicit["rate-window"] {
		r.rateWindow = cfg.rateWindow
	}
	return r
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
