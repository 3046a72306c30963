// Command manager runs the usersync-operator: it keeps the users declared in
// UserSync resources equal to the users at HubSpot, Propel and user.com.
package main

import (
	"flag"
	"os"
	"time"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/usersync/usersync-operator/internal/app"
)

func main() {
	var (
		metricsAddr, probeAddr string
		leaderElect            bool
		leaderElectionID       string
		leaderElectionNS       string
		leaseDuration          time.Duration
	)
	opts := app.DefaultOptions()
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "Address the Prometheus metrics endpoint binds to, e.g. :8080; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader, so that only one replica syncs at a time.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader-election Lease; defaults to the pod's namespace (required outside a cluster).")
	flag.DurationVar(&leaseDuration, "leader-election-lease-duration", 15*time.Second, "How long a lost leader keeps the lease before another replica may take over.")
	flag.StringVar(&leaderElectionID, "leader-election-id", "usersync-operator.users.usersync.io", "Name of the leader-election Lease; shards (--provider-selector) in one namespace need one each.")
	opts.BindFlags(flag.CommandLine)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	cacheOpts, err := opts.CacheOptions()
	if err != nil {
		log.Error(err, "invalid flags")
		os.Exit(2)
	}
	if limit, err := app.SetMemoryLimit(); err != nil {
		log.Error(err, "invalid memory limit")
		os.Exit(2)
	} else if limit > 0 {
		log.Info("Go memory limit set from the container's", "bytes", limit)
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  app.NewScheme(),
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        leaderElectionID,
		LeaderElectionNamespace: leaderElectionNS,
		LeaseDuration:           &leaseDuration,
		RenewDeadline:           ptr.To(leaseDuration * 2 / 3),
		RetryPeriod:             ptr.To(leaseDuration / 7),
		// Stop at once when leadership is lost: another replica takes over.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "unable to create the manager")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := app.Setup(ctx, mgr, opts); err != nil {
		log.Error(err, "unable to set up the sync engine")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "unable to add the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "unable to add the ready check")
		os.Exit(1)
	}
	log.Info("starting the manager")
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "the manager stopped")
		os.Exit(1)
	}
}
