package main

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// approval is what approve would set: the plan's tokens and the held
// deletions' token, each with what it approves.
type approval struct {
	plan      string // comma-joined status.plan tokens
	deletions string // the DeletionHeld token
	// held are the records whose deletion waits, and otherTokens the
	// deletion tokens of other providers (approved one at a time).
	held        []usersv1.RecordResult
	otherTokens []string
}

func (a approval) empty() bool { return a.plan == "" && a.deletions == "" }

// approvalOf reads what waits for approval in a UserSync's status.
func approvalOf(us *usersv1.UserSync) approval {
	var a approval
	tokens := make([]string, 0, len(us.Status.Plan))
	for _, pl := range us.Status.Plan {
		if pl.Token != "" {
			tokens = append(tokens, pl.Token)
		}
	}
	a.plan = strings.Join(tokens, ",")
	// The guard's token is in every held record's message and in the
	// provider line; records of one token are approved together.
	seen := map[string]bool{}
	for _, e := range us.Status.Providers {
		if e.Reason == usersv1.ReasonDeletionHeld {
			if t := deletionToken(e.Message); t != "" && !seen[t] {
				seen[t] = true
				if a.deletions == "" {
					a.deletions = t
				} else {
					a.otherTokens = append(a.otherTokens, t)
				}
			}
		}
	}
	for _, r := range us.Status.Results {
		if r.Reason != usersv1.ReasonDeletionHeld {
			continue
		}
		t := deletionToken(r.Message)
		if a.deletions == "" && t != "" {
			a.deletions = t
			seen[t] = true
		}
		if t == a.deletions {
			a.held = append(a.held, r)
		}
	}
	return a
}

// deletionToken is the token a DeletionHeld message names
// ("... approve with the annotation users.usersync.io/approve-deletions=<token>, ..."),
// as the operator's approveArg reads it; "" when it names none.
func deletionToken(msg string) string {
	prefix := usersv1.AnnotationApproveDeletions + "="
	i := strings.Index(msg, prefix)
	if i < 0 {
		return ""
	}
	arg := msg[i+len(prefix):]
	if j := strings.IndexAny(arg, ", )"); j >= 0 {
		arg = arg[:j]
	}
	return arg
}

func newApproveCmd(o *options) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "approve NAME",
		Short: "Approve a UserSync's plan (spec.mode: Plan) or its held mass deletion",
		Long: `Shows what waits for approval, asks, then sets the annotation that approves
exactly that:

  users.usersync.io/approve-plan=<tokens>      the plan of status.plan (one
                                               token per provider, comma-joined)
  users.usersync.io/approve-deletions=<token>  the deletions the mass-deletion
                                               guard holds (reason DeletionHeld)

The annotation is written only if the UserSync has not changed since it was
shown; otherwise run approve again and review the new plan.`,
		Example: `  kubectl usersync approve platform-team -n platform
  kubectl usersync approve platform-team --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ns, _, err := o.namespace()
			if err != nil {
				return err
			}
			us := &usersv1.UserSync{}
			if err := c.Get(cmd.Context(), types.NamespacedName{Namespace: ns, Name: args[0]}, us); err != nil {
				return err
			}
			a := approvalOf(us)
			if a.empty() {
				return fmt.Errorf("UserSync %s/%s has nothing waiting for approval (no status.plan, no deletion held)", ns, us.Name)
			}
			out := o.streams.Out
			describeApproval(out, us, a)
			if !yes && !confirm(o.streams.In, out) {
				return &exitCode{code: 1, msg: "not approved (answer y, or pass --yes)"}
			}
			patch := client.MergeFromWithOptions(us.DeepCopy(), client.MergeFromWithOptimisticLock{})
			if us.Annotations == nil {
				us.Annotations = map[string]string{}
			}
			if a.plan != "" {
				us.Annotations[usersv1.AnnotationApprovePlan] = a.plan
			}
			if a.deletions != "" {
				us.Annotations[usersv1.AnnotationApproveDeletions] = a.deletions
			}
			if err := c.Patch(cmd.Context(), us, patch); err != nil {
				if apierrors.IsConflict(err) {
					return fmt.Errorf("UserSync %s/%s changed since it was shown: nothing approved; run approve again", ns, us.Name)
				}
				return err
			}
			_, _ = fmt.Fprintf(out, "usersync.users.usersync.io/%s approved\n", us.Name)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "Approve without asking.")
	return cmd
}

// maxListed is how many held keys approve names before "and N more".
const maxListed = 20

func describeApproval(w io.Writer, us *usersv1.UserSync, a approval) {
	if a.plan != "" {
		_, _ = fmt.Fprintf(w, "The plan of UserSync %s/%s (generation %d):\n", us.Namespace, us.Name, us.Generation)
		for _, pl := range us.Status.Plan {
			_, _ = fmt.Fprintf(w, "  %s: %s\n", pl.Provider, planLine(pl))
		}
		byAction := map[string][]string{}
		for _, r := range us.Status.Results {
			if r.Reason == usersv1.ReasonPlanned {
				byAction[r.Provider+" "+r.Action] = append(byAction[r.Provider+" "+r.Action], r.Key)
			}
		}
		for _, k := range sortedKeys(byAction) {
			_, _ = fmt.Fprintf(w, "  %s: %s\n", k, listKeys(byAction[k]))
		}
		_, _ = fmt.Fprintf(w, "  %s=%s\n", usersv1.AnnotationApprovePlan, a.plan)
	}
	if a.deletions != "" {
		_, _ = fmt.Fprintf(w, "Deletions held by the mass-deletion guard in UserSync %s/%s: %d records\n", us.Namespace, us.Name, len(a.held))
		byProvider := map[string][]string{}
		for _, r := range a.held {
			byProvider[r.Provider] = append(byProvider[r.Provider], r.Key)
		}
		for _, k := range sortedKeys(byProvider) {
			_, _ = fmt.Fprintf(w, "  %s Delete: %s\n", k, listKeys(byProvider[k]))
		}
		_, _ = fmt.Fprintf(w, "  %s=%s\n", usersv1.AnnotationApproveDeletions, a.deletions)
		if len(a.otherTokens) > 0 {
			_, _ = fmt.Fprintf(w, "  (other providers hold other deletions, token %s: approve them once these are done)\n", strings.Join(a.otherTokens, ", "))
		}
	}
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func listKeys(keys []string) string {
	if len(keys) <= maxListed {
		return strings.Join(keys, ", ")
	}
	return strings.Join(keys[:maxListed], ", ") + fmt.Sprintf(" and %d more", len(keys)-maxListed)
}

// confirm asks on w and reads the answer from r: y or yes approves.
func confirm(r io.Reader, w io.Writer) bool {
	_, _ = fmt.Fprint(w, "Approve? [y/N]: ")
	line, _ := bufio.NewReader(r).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	_, _ = fmt.Fprintln(w)
	return false
}
