package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/app"
	"github.com/usersync/usersync-operator/internal/declared"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

type planOptions struct {
	file          string
	guardCount    int
	guardPercent  int
	guardMin      int
	showUnchanged bool
}

func newPlanCmd(o *options) *cobra.Command {
	defaults := app.DefaultOptions()
	po := planOptions{guardCount: defaults.DeletionGuardCount, guardPercent: defaults.DeletionGuardPercent,
		guardMin: defaults.DeletionGuardMin}
	cmd := &cobra.Command{
		Use:   "plan -f FILE",
		Short: "Show what the operator would send to the vendors for a manifest, without applying it",
		Long: `Validates the manifest with a server-side dry run (the API server's own
checks and defaults; nothing is stored), then computes offline, with the
operator's planner, what the operator would send for each UserSync of the
manifest against the cluster's current state: the UserSync's status (what
was last written), its providers, the other UserSyncs of those providers
(conflicts, users handed over between UserSyncs) and the mass-deletion
guard. Prints per provider a line per user that would change, then the
vendor calls and the least time they take under the provider's rate limit.

It writes nothing and calls no vendor. The status keeps only a digest of
what was last written, so the fields an update changes are named only when
the cluster's current spec of the user is what was last written.

Exit code: 0 nothing to do, 2 changes, 1 an error (an invalid manifest: the
API server's message).`,
		Example: `  kubectl usersync plan -f users.yaml
  helm template team ./chart | kubectl usersync plan -f -
  kubectl usersync plan -f users.yaml -n platform || [ $? -eq 2 ]`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if po.file == "" {
				return errors.New("-f FILE is required (- reads stdin)")
			}
			return runPlan(cmd.Context(), o, po)
		},
	}
	cmd.Flags().StringVarP(&po.file, "filename", "f", "", "The manifest: a file of YAML or JSON documents, or - for stdin.")
	cmd.Flags().IntVar(&po.guardCount, "deletion-guard-count", po.guardCount, "As the operator's flag: more deletions at once than this are held (0: no count limit).")
	cmd.Flags().IntVar(&po.guardPercent, "deletion-guard-percent", po.guardPercent, "As the operator's flag: deletions of more than this share of a UserSync's users are held (0: no share limit).")
	cmd.Flags().IntVar(&po.guardMin, "deletion-guard-min", po.guardMin, "As the operator's flag: deletions up to this many are never held by the share limit.")
	cmd.Flags().BoolVar(&po.showUnchanged, "show-unchanged", false, "Also list the users that would not change.")
	return cmd
}

// doc is one object of the manifest, as written and as the dry run
// returned it (defaulted).
type doc struct {
	raw, dry *unstructured.Unstructured
	live     *unstructured.Unstructured // the cluster's object, nil if new
}

func readManifest(file string, stdin io.Reader) ([]*unstructured.Unstructured, error) {
	var r io.Reader
	if file == "-" {
		r = stdin
	} else {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("reading %s: a document has no apiVersion or kind", file)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no object", file)
	}
	return out, nil
}

// dryRun sends each object to the API server as a dry-run create (new) or
// update (existing), with strict field validation as kubectl does.
func dryRun(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, ns string, nsExplicit bool) ([]doc, error) {
	docs := make([]doc, 0, len(objs))
	for _, raw := range objs {
		obj := raw.DeepCopy()
		namespaced, err := c.IsObjectNamespaced(obj)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		if namespaced {
			switch {
			case obj.GetNamespace() == "":
				obj.SetNamespace(ns)
			case nsExplicit && obj.GetNamespace() != ns:
				return nil, fmt.Errorf("the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation",
					obj.GetNamespace(), ns, obj.GetNamespace())
			}
		}
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(obj.GroupVersionKind())
		err = c.Get(ctx, client.ObjectKeyFromObject(obj), live)
		switch {
		case apierrors.IsNotFound(err):
			live = nil
			err = c.Create(ctx, obj, client.DryRunAll, client.FieldValidation("Strict"))
		case err == nil:
			obj.SetResourceVersion(live.GetResourceVersion())
			err = c.Update(ctx, obj, client.DryRunAll, client.FieldValidation("Strict"))
		}
		if err != nil {
			return nil, fmt.Errorf("%s %q is invalid: %w", obj.GetKind(), obj.GetName(), err)
		}
		docs = append(docs, doc{raw: raw, dry: obj, live: live})
	}
	return docs, nil
}

// convert decodes an object into a typed one through JSON (attribute
// values keep their JSON form).
func convert(u *unstructured.Unstructured, into any) error {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

func runPlan(ctx context.Context, o *options, po planOptions) error {
	pl, err := newManifestPlanner(ctx, o, po)
	if err != nil {
		return err
	}
	changed, err := pl.planAll(ctx, o.streams.Out)
	if err != nil {
		return err
	}
	if changed {
		return errChanges
	}
	return nil
}

// newManifestPlanner reads the manifest, validates it with the dry run, and
// returns a planner of its UserSyncs.
func newManifestPlanner(ctx context.Context, o *options, po planOptions) (*planner2, error) {
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	ns, explicit, err := o.namespace()
	if err != nil {
		return nil, err
	}
	objs, err := readManifest(po.file, o.streams.In)
	if err != nil {
		return nil, err
	}
	docs, err := dryRun(ctx, c, objs, ns, explicit)
	if err != nil {
		return nil, err
	}
	pl := &planner2{c: c, docs: docs, po: po, p: painter{on: colored(o.streams.Out)}, now: time.Now(),
		manifest: map[string]*manifestSync{}}
	for _, d := range docs {
		if d.dry.GroupVersionKind() != usersv1.GroupVersion.WithKind("UserSync") {
			continue
		}
		ms := &manifestSync{us: &usersv1.UserSync{}}
		if err := convert(d.dry, ms.us); err != nil {
			return nil, err
		}
		if d.live != nil {
			ms.live = &usersv1.UserSync{}
			if err := convert(d.live, ms.live); err != nil {
				return nil, err
			}
			if ms.us.Annotations[usersv1.AnnotationApproveDeletions] == "" && ms.live.Annotations[usersv1.AnnotationApproveDeletions] != "" {
				// An apply keeps the approval the cluster's object carries.
				if ms.us.Annotations == nil {
					ms.us.Annotations = map[string]string{}
				}
				ms.us.Annotations[usersv1.AnnotationApproveDeletions] = ms.live.Annotations[usersv1.AnnotationApproveDeletions]
			}
		}
		pl.order = append(pl.order, ms)
		pl.manifest[ms.us.Namespace+"/"+ms.us.Name] = ms
	}
	return pl, nil
}

// planAll prints the plan of every UserSync of the manifest and reports
// whether anything would change.
func (pl *planner2) planAll(ctx context.Context, w io.Writer) (bool, error) {
	if len(pl.order) == 0 {
		_, _ = fmt.Fprintf(w, "The manifest is valid; it holds no UserSync to plan.\n")
		return false, nil
	}
	changed := false
	for _, ms := range pl.order {
		ch, err := pl.planSync(ctx, w, ms.us, ms.live)
		if err != nil {
			return false, err
		}
		changed = changed || ch
	}
	return changed, nil
}

// planner2 plans the UserSyncs of one manifest.
type planner2 struct {
	c    client.Client
	docs []doc
	po   planOptions
	p    painter
	now  time.Time
	// manifest holds the manifest's UserSyncs by namespace/name, in order:
	// each is planned with the others as they will be once applied.
	manifest map[string]*manifestSync
	order    []*manifestSync
	// results are the plans printed, one per UserSync and provider.
	results []providerResult
}

// manifestSync is a UserSync of the manifest as the dry run returned it
// (defaulted, with the cluster's status), and the cluster's object (nil if
// new).
type manifestSync struct {
	us, live *usersv1.UserSync
}

// providerResult is the plan of one UserSync at one provider, as printed.
type providerResult struct {
	// Sync is namespace/name, Provider the provider's reference
	// (UserProvider/name).
	Sync, Provider string
	Rows           []row
	// Creates, Updates and Deletes count the writes of this UserSync.
	Creates, Updates, Deletes int
	// Calls is the number of vendor calls (see forecastLine): when this
	// UserSync's changes are sent on apply, the calls of the operator's
	// loop that sends them, shared with the changes of SharedWith;
	// when they are held (mode Plan, suspend), the calls of this
	// UserSync's changes alone, sent once approved.
	Calls      int
	SharedWith []string
	// Held, when not empty, says when this UserSync's changes are sent:
	// not on apply ("once approved": mode Plan without an approval of this
	// plan; "once spec.suspend is false").
	Held string
}

// provider is a provider as the plan uses it.
type provider struct {
	ref      usersv1.ProviderRef
	spec     usersv1.ProviderSpec
	selector *metav1.LabelSelector
	vendor   providers.Client
	factory  providers.Factory
	// mapping is the provider's attributeMapping, compiled as the operator
	// compiles it.
	mapping *declared.Mapping
}

// fromManifest returns the dry-run object of kind/ns/name in the manifest.
func (pl *planner2) fromManifest(kind, ns, name string) *unstructured.Unstructured {
	for _, d := range pl.docs {
		if d.dry.GetKind() == kind && d.dry.GetNamespace() == ns && d.dry.GetName() == name &&
			d.dry.GroupVersionKind().Group == usersv1.GroupVersion.Group {
			return d.dry
		}
	}
	return nil
}

// provider reads a provider from the manifest, else the cluster; nil when
// it is in neither.
func (pl *planner2) provider(ctx context.Context, ns string, ref usersv1.ProviderRef) (*provider, error) {
	p := &provider{ref: ref}
	if ref.Kind == usersv1.KindClusterUserProvider {
		obj := &usersv1.ClusterUserProvider{}
		if u := pl.fromManifest(string(ref.Kind), "", ref.Name); u != nil {
			if err := convert(u, obj); err != nil {
				return nil, err
			}
		} else if err := pl.c.Get(ctx, types.NamespacedName{Name: ref.Name}, obj); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			return nil, err
		}
		p.spec, p.selector = obj.Spec.ProviderSpec, obj.Spec.NamespaceSelector
	} else {
		obj := &usersv1.UserProvider{}
		if u := pl.fromManifest(string(ref.Kind), ns, ref.Name); u != nil {
			if err := convert(u, obj); err != nil {
				return nil, err
			}
		} else if err := pl.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, obj); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			return nil, err
		}
		p.spec = obj.Spec
	}
	f, ok := app.NewRegistry().Get(string(p.spec.Type))
	if !ok {
		return nil, fmt.Errorf("%s: type %s is not supported by this operator", ref, p.spec.Type)
	}
	v, err := f.New(offlineConfig(p.spec))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	p.vendor, p.factory = v, f
	targets, _ := v.(providers.AttributeTargets)
	if p.mapping, err = declared.Compile(&p.spec, targets); err != nil {
		return nil, fmt.Errorf("%s: the operator would not write with this attributeMapping (Ready=False, reason %s): %w", ref, usersv1.ReasonInvalidMapping, err)
	}
	return p, nil
}

// offlineConfig is a vendor client's configuration without credentials:
// the plan uses the client only for what it computes without I/O (the
// users' vendor identity, the call count, whether it can delete), so its
// placeholder credentials never leave the process, and its HTTP client
// refuses every request.
func offlineConfig(spec usersv1.ProviderSpec) providers.Config {
	placeholder := []byte("kubectl-usersync-plan-offline")
	creds := map[string][]byte{"token": placeholder, "clientId": placeholder, "clientSecret": placeholder}
	if spec.Propel != nil && spec.Propel.ClientIDKey != "" {
		creds[spec.Propel.ClientIDKey] = placeholder
	}
	cfg := providers.Config{Endpoint: spec.Endpoint, Credentials: creds, Spec: spec,
		HTTPClient: &http.Client{Transport: refuseAll{}}}
	if spec.BatchSize != nil {
		cfg.BatchSize = int(*spec.BatchSize)
	}
	return cfg
}

// refuseAll is a transport that sends nothing.
type refuseAll struct{}

func (refuseAll) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("kubectl usersync plan never calls a vendor")
}

// admits reports whether a ClusterUserProvider admits namespace ns.
func (pl *planner2) admits(ctx context.Context, p *provider, ns string) (bool, error) {
	if p.selector == nil {
		return true, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(p.selector)
	if err != nil {
		return false, err
	}
	n := &corev1.Namespace{}
	if err := pl.c.Get(ctx, types.NamespacedName{Name: ns}, n); err != nil {
		return false, err
	}
	return sel.Matches(labelSet(n.Labels)), nil
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

// row is one user that would change.
type row struct {
	key, action, changes string
}

// planSync prints the plan of one UserSync and reports whether anything
// would change.
func (pl *planner2) planSync(ctx context.Context, w io.Writer, us, live *usersv1.UserSync) (bool, error) {
	_, _ = fmt.Fprintf(w, "UserSync %s/%s", us.Namespace, us.Name)
	if live == nil {
		_, _ = fmt.Fprint(w, " (new)")
	}
	_, _ = fmt.Fprintln(w)
	if us.Spec.Suspend {
		_, _ = fmt.Fprintln(w, "  spec.suspend is true: nothing below is sent until it is false.")
	}
	if us.Spec.Mode == usersv1.ModePlan {
		_, _ = fmt.Fprintf(w, "  spec.mode is Plan: nothing below is sent until approved (kubectl usersync approve %s).\n", us.Name)
	}
	// The providers of spec.providerRefs, then those the status still
	// holds records of (their records leave).
	refs := append([]usersv1.ProviderRef(nil), us.Spec.ProviderRefs...)
	listed := map[string]bool{}
	for _, r := range refs {
		listed[r.String()] = true
	}
	for _, r := range us.Status.Results {
		if !listed[r.Provider] {
			if kind, name, ok := strings.Cut(r.Provider, "/"); ok {
				listed[r.Provider] = true
				refs = append(refs, usersv1.ProviderRef{Kind: usersv1.ProviderKind(kind), Name: name})
			}
		}
	}
	changed := false
	for i, ref := range refs {
		removed := i >= len(us.Spec.ProviderRefs)
		p, err := pl.provider(ctx, us.Namespace, ref)
		if err != nil {
			return false, err
		}
		if p == nil {
			if removed {
				continue // the operator forgets the records of a provider that is gone
			}
			if ref.Kind == usersv1.KindClusterUserProvider {
				return false, fmt.Errorf("ClusterUserProvider %q not found: the operator would write nothing (ProviderNotFound)", ref.Name)
			}
			return false, fmt.Errorf("UserProvider %q not found in namespace %s (a UserSync can only use UserProviders of its own namespace, or ClusterUserProviders): the operator would write nothing", ref.Name, us.Namespace)
		}
		if ok, err := pl.admits(ctx, p, us.Namespace); err != nil {
			return false, err
		} else if !ok {
			return false, fmt.Errorf("ClusterUserProvider %q does not admit namespace %s (namespaceSelector): the operator would write nothing (NotPermitted)", ref.Name, us.Namespace)
		}
		ch, err := pl.planProvider(ctx, w, us, live, p, removed)
		if err != nil {
			return false, err
		}
		changed = changed || ch
	}
	return changed, nil
}

// syncsOf lists the other UserSyncs of provider p, as they will be once
// the manifest is applied: those of the cluster naming it or holding
// records of it (a ClusterUserProvider's in every namespace), in the
// manifest's version where the manifest holds them, and the manifest's new
// UserSyncs naming it. listedIn says whether each names it.
func (pl *planner2) syncsOf(ctx context.Context, us *usersv1.UserSync, p *provider) ([]*usersv1.UserSync, []bool, error) {
	list := &usersv1.UserSyncList{}
	var opts []client.ListOption
	if p.ref.Kind != usersv1.KindClusterUserProvider {
		opts = append(opts, client.InNamespace(us.Namespace))
	}
	if err := pl.c.List(ctx, list, opts...); err != nil {
		return nil, nil, err
	}
	candidates := make([]*usersv1.UserSync, 0, len(list.Items))
	seen := map[string]bool{}
	for i := range list.Items {
		o := &list.Items[i]
		key := o.Namespace + "/" + o.Name
		seen[key] = true
		if ms := pl.manifest[key]; ms != nil {
			o = ms.us
		}
		candidates = append(candidates, o)
	}
	for _, ms := range pl.order {
		if !seen[ms.us.Namespace+"/"+ms.us.Name] && (p.ref.Kind == usersv1.KindClusterUserProvider || ms.us.Namespace == us.Namespace) {
			candidates = append(candidates, ms.us)
		}
	}
	var out []*usersv1.UserSync
	var listedIn []bool
	for _, o := range candidates {
		if o.Namespace == us.Namespace && o.Name == us.Name {
			continue
		}
		listed := false
		for _, r := range o.Spec.ProviderRefs {
			if r.Kind == "" {
				r.Kind = usersv1.KindUserProvider
			}
			if r == p.ref {
				listed = true
			}
		}
		holds := false
		for _, r := range o.Status.Results {
			if r.Provider == p.ref.String() {
				holds = true
				break
			}
		}
		if listed || holds {
			out = append(out, o)
			listedIn = append(listedIn, listed)
		}
	}
	return out, listedIn, nil
}

// syncOf is a UserSync as plannerInput (internal/controller) builds it for
// the planner, without holds (the plan shows what would be sent; heldOf
// adds them) and without create intents (they change how a create is
// sent, not whether).
func (pl *planner2) syncOf(us *usersv1.UserSync, p *provider, listed bool) planner.Sync {
	s := planner.Sync{
		Name:        us.Namespace + "/" + us.Name,
		Created:     us.CreationTimestamp.Time,
		Records:     declared.RecordsOf(us, p.ref.String()),
		Delete:      us.Spec.DeletionPolicy == usersv1.DeletionPolicyDelete,
		Removed:     !listed || !us.DeletionTimestamp.IsZero(),
		DriftPolicy: string(us.Spec.DriftPolicy),
	}
	if (pl.po.guardCount > 0 || pl.po.guardPercent > 0) && s.Delete && us.Spec.Mode != usersv1.ModePlan {
		s.Guard = &planner.DeletionGuard{MaxCount: pl.po.guardCount, MaxPercent: pl.po.guardPercent,
			MinCount: pl.po.guardMin, Approved: us.Annotations[usersv1.AnnotationApproveDeletions]}
	}
	if ds, ok := p.vendor.(providers.DeleteSupport); ok && s.Delete {
		if can, _ := ds.CanDelete(); !can {
			s.Delete = false
		}
	}
	if !s.Removed {
		s.Users = declared.Users(us, p.mapping, p.vendor, true)
	}
	return s
}

// heldOf is the hold the operator's loop puts on a UserSync's changes
// (internal/controller holdOf and computeGated): spec.suspend, or mode Plan
// when the approve-plan annotation does not name the plan of its items.
func heldOf(us *usersv1.UserSync, p *provider, s planner.Sync, items []planner.Item) *planner.Hold {
	switch {
	case us.Spec.Suspend:
		return &planner.Hold{Reason: usersv1.ReasonSuspended, Message: "spec.suspend is true"}
	case us.Spec.Mode != usersv1.ModePlan || s.Removed:
		return nil
	}
	rv := planner.ReviewOf(p.ref.String(), us.Generation, items)
	if !rv.NeedsApproval() || planner.ApprovedBy(us.Annotations[usersv1.AnnotationApprovePlan], rv.Token) {
		return nil
	}
	return &planner.Hold{Reason: usersv1.ReasonPlanned, Planned: true, Message: "spec.mode is Plan"}
}

// planProvider prints the plan of UserSync us at provider p: its rows, then
// the counts and the calls.
func (pl *planner2) planProvider(ctx context.Context, w io.Writer, us, live *usersv1.UserSync, p *provider, removed bool) (bool, error) {
	others, listed, err := pl.syncsOf(ctx, us, p)
	if err != nil {
		return false, err
	}
	objs := append([]*usersv1.UserSync{us}, others...)
	in := planner.Input{Now: pl.now, Backoff: app.DefaultOptions().Backoff, Syncs: []planner.Sync{pl.syncOf(us, p, !removed)}}
	for i, o := range others {
		in.Syncs = append(in.Syncs, pl.syncOf(o, p, listed[i]))
	}
	plan := planner.Compute(in)
	items := plan.Of(0)
	rows := pl.rows(us, live, p, in.Syncs[0], items)
	res := providerResult{Sync: us.Namespace + "/" + us.Name, Provider: p.ref.String(), Rows: rows}
	rv := planner.ReviewOf(p.ref.String(), us.Generation, items)
	res.Creates, res.Updates, res.Deletes = rv.Creates, rv.Updates, rv.Deletes

	// What the operator's first loop after the apply sends to this
	// provider: the changes of every UserSync that is not held, packed
	// together into the vendor's batches.
	gated := in
	gated.Syncs = append([]planner.Sync(nil), in.Syncs...)
	for si := range gated.Syncs {
		gated.Syncs[si].Hold = heldOf(objs[si], p, in.Syncs[si], plan.Of(si))
	}
	if h := gated.Syncs[0].Hold; h != nil {
		res.Held = "once spec.suspend is false"
		if h.Planned {
			res.Held = "once approved"
		}
	}
	if res.Held != "" {
		res.Calls = callsOf(p, rv.Changes)
	} else {
		sent := planner.Compute(gated)
		res.Calls = callsOf(p, sent.Changes())
		sharing := map[int]bool{}
		for pos := range sent.NumChanges() {
			if si := sent.ChangeItem(pos).Sync; si != 0 && !sharing[si] {
				sharing[si] = true
				res.SharedWith = append(res.SharedWith, in.Syncs[si].Name)
			}
		}
		sort.Strings(res.SharedWith)
	}
	pl.results = append(pl.results, res)

	_, _ = fmt.Fprintf(w, "\n%s (%s)", p.ref, p.spec.Type)
	if removed {
		_, _ = fmt.Fprint(w, ", no longer in spec.providerRefs")
	}
	_, _ = fmt.Fprintln(w)
	if ds, ok := p.vendor.(providers.DeleteSupport); ok && us.Spec.DeletionPolicy == usersv1.DeletionPolicyDelete {
		if can, why := ds.CanDelete(); !can {
			_, _ = fmt.Fprintf(w, "  deletionPolicy Delete cannot be honoured, users removed are left at the vendor: %s\n", why)
		}
	}
	if len(rows) == 0 {
		_, _ = fmt.Fprintln(w, "  No changes.")
		return false, nil
	}
	tw := printers.GetNewTabWriter(w)
	_, _ = fmt.Fprintln(tw, "  KEY\tACTION\tCHANGES")
	changed := false
	for _, r := range rows {
		if r.action != "unchanged" {
			changed = true
		}
		_, _ = fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.key, pl.p.state(r.action), r.changes)
	}
	if err := tw.Flush(); err != nil {
		return false, err
	}
	_, _ = fmt.Fprintf(w, "  %d to create, %d to update, %d to delete: %s\n", rv.Creates, rv.Updates, rv.Deletes, forecastLine(p, res))
	return changed, nil
}
