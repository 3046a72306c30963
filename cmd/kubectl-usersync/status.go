package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// statusFilter selects records; no flag selects them all, several flags
// select their union.
type statusFilter struct {
	failed, pending, drifted bool
	provider                 string
}

func (f statusFilter) any() bool { return f.failed || f.pending || f.drifted }

// keep reports whether r passes the filter. --pending is every record
// that waits for a vendor call: Pending and Deleting. --drifted is every
// record found different at the vendor: Drifted (driftPolicy Report), and
// Pending with reason Drifted or Missing (driftPolicy Correct, about to be
// rewritten).
func (f statusFilter) keep(r *usersv1.RecordResult) bool {
	if f.provider != "" && r.Provider != f.provider && !strings.HasSuffix(r.Provider, "/"+f.provider) {
		return false
	}
	if !f.any() {
		return true
	}
	switch {
	case f.failed && r.State == usersv1.StateFailed:
		return true
	case f.pending && (r.State == usersv1.StatePending || r.State == usersv1.StateDeleting):
		return true
	case f.drifted && (r.State == usersv1.StateDrifted ||
		r.State == usersv1.StatePending && (r.Reason == usersv1.ReasonDrifted || r.Reason == usersv1.ReasonMissing)):
		return true
	}
	return false
}

func newStatusCmd(o *options) *cobra.Command {
	var f statusFilter
	var output string
	var all bool
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show a UserSync's per-user results, or list the UserSyncs",
		Long: `With NAME, prints the UserSync's conditions, counts and plan, then one line
per (provider, user) record of status.results. Without NAME, lists the
UserSyncs of the namespace (-A: of every namespace) with their counts.

--failed, --pending and --drifted select records (several: any of them):
--pending is every record that waits for a vendor call (Pending, Deleting),
--drifted every record found different at the vendor (Drifted, or Pending
with reason Drifted or Missing).`,
		Example: `  kubectl usersync status platform-team
  kubectl usersync status platform-team --failed -o wide
  kubectl usersync status platform-team --pending --provider hubspot
  kubectl usersync status platform-team -o json | jq '.[].key'
  kubectl usersync status -A`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "", "wide", "json", "yaml":
			default:
				return fmt.Errorf("unsupported output format %q: use wide, json or yaml", output)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ns, _, err := o.namespace()
			if err != nil {
				return err
			}
			p := painter{on: colored(o.streams.Out)}
			if len(args) == 0 {
				if output == "json" || output == "yaml" {
					return fmt.Errorf("-o %s needs a NAME; for the objects use kubectl get usersyncs -o %s", output, output)
				}
				list := &usersv1.UserSyncList{}
				opts := []client.ListOption{}
				if !all {
					opts = append(opts, client.InNamespace(ns))
				}
				if err := c.List(cmd.Context(), list, opts...); err != nil {
					return err
				}
				if len(list.Items) == 0 {
					if all {
						_, _ = fmt.Fprintln(o.streams.ErrOut, "No UserSyncs found.")
					} else {
						_, _ = fmt.Fprintf(o.streams.ErrOut, "No UserSyncs found in %s namespace.\n", ns)
					}
					return nil
				}
				return printList(o.streams.Out, list.Items, all, output == "wide", p)
			}
			if all {
				return fmt.Errorf("-A lists UserSyncs: give no NAME, or -n NAMESPACE with a NAME")
			}
			us := &usersv1.UserSync{}
			if err := c.Get(cmd.Context(), types.NamespacedName{Namespace: ns, Name: args[0]}, us); err != nil {
				return err
			}
			return printStatus(o.streams.Out, us, f, output, p, time.Now())
		},
	}
	cmd.Flags().BoolVar(&f.failed, "failed", false, "Only the Failed records.")
	cmd.Flags().BoolVar(&f.pending, "pending", false, "Only the records waiting for a vendor call (Pending, Deleting).")
	cmd.Flags().BoolVar(&f.drifted, "drifted", false, "Only the records found different at the vendor.")
	cmd.Flags().StringVar(&f.provider, "provider", "", "Only the records of this provider (NAME, or KIND/NAME).")
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: wide, json or yaml (json and yaml: the selected records).")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "List the UserSyncs of every namespace.")
	return cmd
}

// printStatus prints one UserSync: a header (conditions, counts, plan),
// then its selected records as a table; or, with json and yaml, the
// selected records alone.
func printStatus(w io.Writer, us *usersv1.UserSync, f statusFilter, output string, p painter, now time.Time) error {
	recs := make([]usersv1.RecordResult, 0, len(us.Status.Results))
	for i := range us.Status.Results {
		if f.keep(&us.Status.Results[i]) {
			recs = append(recs, us.Status.Results[i])
		}
	}
	switch output {
	case "json":
		b, err := json.MarshalIndent(recs, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	case "yaml":
		b, err := yaml.Marshal(recs)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	mode := us.Spec.Mode
	if mode == "" {
		mode = usersv1.ModeApply
	}
	_, _ = fmt.Fprintf(w, "UserSync %s/%s  mode %s  generation %d (observed %d)\n", us.Namespace, us.Name, mode, us.Generation, us.Status.ObservedGeneration)
	s := us.Status.Summary
	_, _ = fmt.Fprintf(w, "Records: %d desired, %d synced, %d pending, %d failed, %d drifted\n", s.Desired, s.Synced, s.Pending, s.Failed, s.Drifted)
	for _, t := range []string{usersv1.ConditionReady, usersv1.ConditionDegraded, usersv1.ConditionPlanned, usersv1.ConditionDrifted, usersv1.ConditionSuspended} {
		c := meta.FindStatusCondition(us.Status.Conditions, t)
		if c == nil || (t != usersv1.ConditionReady && c.Status != "True") {
			continue
		}
		_, _ = fmt.Fprintf(w, "%s: %s (%s) %s\n", t, p.state(string(c.Status)), c.Reason, c.Message)
	}
	for _, pl := range us.Status.Plan {
		_, _ = fmt.Fprintf(w, "Plan %s: %s, token %s\n", pl.Provider, planLine(pl), pl.Token)
	}
	_, _ = fmt.Fprintln(w)
	if len(recs) == 0 {
		if f.any() || f.provider != "" {
			_, _ = fmt.Fprintln(w, "No records match.")
		} else {
			_, _ = fmt.Fprintln(w, "No records yet.")
		}
		return nil
	}
	return printRecords(w, recs, output == "wide", p, now)
}

// planLine is a status.plan line in words.
func planLine(pl usersv1.ProviderPlan) string {
	s := fmt.Sprintf("%d creates, %d updates, %d deletes in %d calls", pl.Creates, pl.Updates, pl.Deletes, pl.Calls)
	if pl.EstimatedDuration != nil {
		s += fmt.Sprintf(" (at least %s)", pl.EstimatedDuration.Duration)
	}
	return s
}

// maxMessage is the longest message printed without -o wide.
const maxMessage = 80

func printRecords(w io.Writer, recs []usersv1.RecordResult, wide bool, p painter, now time.Time) error {
	tw := printers.GetNewTabWriter(w)
	header := "PROVIDER\tKEY\tSTATE\tACTION\tREASON\tMESSAGE"
	if wide {
		header += "\tEXTERNAL-ID\tATTEMPTS\tLAST-SYNC\tHASH"
	}
	_, _ = fmt.Fprintln(tw, header)
	for i := range recs {
		r := &recs[i]
		msg := r.Message
		if !wide {
			msg = shorten(msg, maxMessage)
		}
		line := strings.Join([]string{r.Provider, r.Key, p.state(string(r.State)), dash(r.Action), dash(r.Reason), dash(msg)}, "\t")
		if wide {
			last := "<none>"
			if r.LastSyncTime != nil {
				last = age(now.Sub(r.LastSyncTime.Time))
			}
			line += "\t" + strings.Join([]string{dash(r.ExternalID), strconv.Itoa(int(r.Attempts)), last, dash(r.Hash)}, "\t")
		}
		_, _ = fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func printList(w io.Writer, items []usersv1.UserSync, all, wide bool, p painter) error {
	tw := printers.GetNewTabWriter(w)
	header := "NAME\tMODE\tPROVIDERS\tDESIRED\tSYNCED\tPENDING\tFAILED\tDRIFTED\tREADY"
	if all {
		header = "NAMESPACE\t" + header
	}
	if wide {
		header += "\tREASON\tPLANNED"
	}
	_, _ = fmt.Fprintln(tw, header)
	for i := range items {
		us := &items[i]
		s := us.Status.Summary
		mode := string(us.Spec.Mode)
		if mode == "" {
			mode = string(usersv1.ModeApply)
		}
		ready, reason := "Unknown", "-"
		if c := meta.FindStatusCondition(us.Status.Conditions, usersv1.ConditionReady); c != nil {
			ready, reason = string(c.Status), c.Reason
		}
		cols := []string{us.Name, mode, dash(us.Status.ProviderNames), itoa(s.Desired), itoa(s.Synced), itoa(s.Pending),
			itoa(s.Failed), itoa(s.Drifted), p.state(ready)}
		if all {
			cols = append([]string{us.Namespace}, cols...)
		}
		if wide {
			planned := 0
			for _, pl := range us.Status.Plan {
				planned += int(pl.Creates + pl.Updates + pl.Deletes)
			}
			cols = append(cols, reason, strconv.Itoa(planned))
		}
		_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	return tw.Flush()
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// dash is s, or "-" for an empty cell (a table cell is never empty).
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shorten cuts s to n runes with an ellipsis, on one line.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// age is a duration as kubectl prints ages: 45s, 3m, 5h, 2d.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
