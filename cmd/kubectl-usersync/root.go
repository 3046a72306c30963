package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/usersync/usersync-operator/internal/app"
)

// options are what every subcommand shares: the kubectl flags
// (--kubeconfig, --context, -n, ...) and the streams.
type options struct {
	kube    *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
}

func newRootCmd(streams genericiooptions.IOStreams) *cobra.Command {
	o := &options{kube: genericclioptions.NewConfigFlags(true), streams: streams}
	cmd := &cobra.Command{
		Use: "kubectl-usersync",
		// kubectl runs the plugin as "kubectl usersync": help says so.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl usersync"},
		Short:       "Inspect, plan and approve the usersync-operator's UserSyncs",
		Long: `kubectl usersync works with the UserSyncs of the usersync-operator
(users.usersync.io/v1alpha1): their per-user results, what a manifest would
change at the vendors, and the approval of a plan or of held deletions.

It talks to the API server only, with your kubeconfig; it never calls a
vendor and needs no vendor credentials.`,
		Example: `  # What would applying users.yaml send to the vendors? (exit 0: nothing, 2: changes)
  kubectl usersync plan -f users.yaml

  # The records of a UserSync that failed
  kubectl usersync status platform-team -n platform --failed

  # Every UserSync of every namespace
  kubectl usersync status -A

  # Approve the plan (spec.mode: Plan) or the held deletions of a UserSync
  kubectl usersync approve platform-team -n platform`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	o.kube.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(newStatusCmd(o), newApproveCmd(o), newPlanCmd(o))
	return cmd
}

// client is a client of the API server with the operator's types.
func (o *options) client() (client.Client, error) {
	cfg, err := o.kube.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: app.NewScheme()})
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	return c, nil
}

// namespace is -n, else the kubeconfig context's namespace, else
// "default"; explicit says whether -n was given.
func (o *options) namespace() (ns string, explicit bool, err error) {
	return o.kube.ToRawKubeConfigLoader().Namespace()
}

// colored reports whether w is a terminal that should get colours (not
// with NO_COLOR set, https://no-color.org).
func colored(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// Colours of equal escape length (5 bytes, then a 4-byte reset), so that a
// column coloured cell by cell keeps tabwriter's alignment.
const (
	colorGreen  = "\x1b[32m"
	colorYellow = "\x1b[33m"
	colorRed    = "\x1b[31m"
	colorCyan   = "\x1b[36m"
	colorPlain  = "\x1b[39m"
	colorReset  = "\x1b[0m"
)

// painter colours words when on is true.
type painter struct{ on bool }

func (p painter) paint(color, s string) string {
	if !p.on {
		return s
	}
	return color + s + colorReset
}

// state colours a record state or an action by its meaning.
func (p painter) state(s string) string {
	switch s {
	case "Synced", "True", "create", "Created", "Updated", "Adopted", "Corrected", "Recreated":
		return p.paint(colorGreen, s)
	case "Pending", "Deleting", "update", "Unknown":
		return p.paint(colorYellow, s)
	case "Failed", "False", "delete", "Deleted", "fail":
		return p.paint(colorRed, s)
	case "Drifted", "hold", "forget":
		return p.paint(colorCyan, s)
	}
	return p.paint(colorPlain, s)
}
