package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

const (
	providerName = "hs"
	secretName   = "hs"
	token        = "pat-bench"
)

// providerIndex is how the operator's metrics name the point's provider.
func providerIndex(ns string) string {
	return string(usersv1.KindUserProvider) + "/" + ns + "/" + providerName
}

// createSecret creates the provider's token Secret.
func createSecret(ctx context.Context, c client.Client, ns string) error {
	return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName},
		Data: map[string][]byte{"token": []byte(token)}})
}

// createProvider creates the UserProvider, and its token Secret withSecret.
// Drift detection is off (spec.driftDetection.interval 0s): a pass reads
// every user back, which the points and ratelimit scenarios do not measure;
// the verify scenario turns it on once the users are converged
// (patchDriftInterval).
func createProvider(ctx context.Context, c client.Client, ns, endpoint string, requests int, period time.Duration, withSecret bool) error {
	if withSecret {
		if err := createSecret(ctx, c, ns); err != nil {
			return err
		}
	}
	return c.Create(ctx, &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: providerName},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot, Endpoint: endpoint, AllowInsecureHTTP: true,
			CredentialsRef: usersv1.SecretKeyReference{Name: secretName, Key: "token"},
			RateLimit:      &usersv1.RateLimit{Requests: int32(requests), Period: metav1.Duration{Duration: period}},
			DriftDetection: &usersv1.DriftDetection{Interval: &metav1.Duration{}}}})
}

// patchDriftInterval sets the provider's spec.driftDetection.interval.
func patchDriftInterval(ctx context.Context, c client.Client, ns string, d time.Duration) error {
	p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: providerName}}
	body := fmt.Sprintf(`{"spec":{"driftDetection":{"interval":%q}}}`, d.String())
	return c.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(body)))
}

// getProvider reads the point's provider.
func getProvider(ctx context.Context, c client.Client, ns string) (*usersv1.UserProvider, error) {
	var p usersv1.UserProvider
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: providerName}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// providerReady reports whether the operator has verified the provider (or,
// with want False, found it not ready), and the provider's resourceVersion.
func providerReady(ctx context.Context, c client.Client, ns string, want metav1.ConditionStatus) (bool, string, error) {
	var p usersv1.UserProvider
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: providerName}, &p); err != nil {
		return false, "", err
	}
	cond := meta.FindStatusCondition(p.Status.Conditions, usersv1.ConditionReady)
	ok := cond != nil && cond.Status == want && p.Status.ObservedGeneration == p.Generation
	return ok, p.ResourceVersion, nil
}

// allHeld reports whether the operator has reported every UserSync of the
// namespace as waiting for its provider.
func allHeld(ctx context.Context, c client.Client, ns string, n int) (bool, error) {
	var list usersv1.UserSyncList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return false, err
	}
	held := 0
	for i := range list.Items {
		us := &list.Items[i]
		cond := meta.FindStatusCondition(us.Status.Conditions, usersv1.ConditionReady)
		if cond != nil && cond.Reason == usersv1.ReasonProviderNotReady && cond.ObservedGeneration == us.Generation {
			held++
		}
	}
	return held == n, nil
}

// userSyncs builds the point's UserSyncs: users with an email, a first and
// last name and two or three attributes; emails are unique across the point.
func userSyncs(ns string, p point) []*usersv1.UserSync {
	teams := []string{"platform", "sales", "support", "finance", "research"}
	out := make([]*usersv1.UserSync, p.syncs)
	for s := range out {
		users := make([]usersv1.User, p.users)
		for i := range users {
			key := fmt.Sprintf("s%d-u%d", s, i)
			attrs := map[string]usersv1.AttributeValue{
				"team": usersv1.StringValue(teams[(s+i)%len(teams)]),
				"seat": usersv1.NumberValue(float64(s*p.users + i)),
			}
			if i%2 == 0 {
				attrs["admin"] = usersv1.BoolValue(i%10 == 0)
			}
			users[i] = usersv1.User{Key: key, Email: key + "@bench.example.com", FirstName: fmt.Sprintf("First%d", i),
				LastName: fmt.Sprintf("Last%d", s), Attributes: attrs}
		}
		out[s] = &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("team-%04d", s)},
			Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: providerName}},
				Users: users}}
	}
	return out
}

// createAll creates the UserSyncs from a few goroutines; it returns when all
// are created, with the first error.
func createAll(ctx context.Context, c client.Client, objs []*usersv1.UserSync, workers int, created *atomic.Int64) error {
	next := make(chan *usersv1.UserSync)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for us := range next {
				if err := c.Create(ctx, us); err != nil {
					errs <- fmt.Errorf("creating UserSync %s: %w", us.Name, err)
					return
				}
				created.Add(1)
			}
		}()
	}
	var err error
feed:
	for _, us := range objs {
		select {
		case next <- us:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// syncRow is one UserSync as the readiness poll sees it.
type syncRow struct {
	name  string
	rv    string // only from versions
	ready string // the Ready condition's status
}

// tableReader lists UserSyncs in the server-side Table form: the apiserver
// serves it from its watch cache (resourceVersion=0) and sends the printer
// columns instead of the objects (hundreds of KiB at 500 users), so that
// polling every 250 ms does not load the machine the operator is measured
// on. list, the poll, asks for no object at all; versions asks for each
// row's metadata too, for its resourceVersion, which carries the
// managedFields (a third of a 500-user UserSync: the user's, listing every
// user's fields), so it is read only before and after a measurement.
type tableReader struct {
	http *http.Client
	host string
}

func newTableReader(cfg *rest.Config) (*tableReader, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &tableReader{http: hc, host: strings.TrimSuffix(cfg.Host, "/")}, nil
}

// list reads each UserSync's name and Ready column.
func (t *tableReader) list(ctx context.Context, ns string) ([]syncRow, error) {
	return t.read(ctx, ns, false)
}

// versions reads each UserSync's name, Ready column and resourceVersion.
func (t *tableReader) versions(ctx context.Context, ns string) ([]syncRow, error) {
	return t.read(ctx, ns, true)
}

func (t *tableReader) read(ctx context.Context, ns string, withVersions bool) ([]syncRow, error) {
	include := "None"
	if withVersions {
		include = "Metadata"
	}
	u := fmt.Sprintf("%s/apis/%s/%s/namespaces/%s/usersyncs?includeObject=%s&resourceVersion=0",
		t.host, usersv1.GroupVersion.Group, usersv1.GroupVersion.Version, ns, include)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := t.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("listing UserSyncs as a table: %s: %.300s", resp.Status, body)
	}
	var tab metav1.Table
	if err := json.Unmarshal(body, &tab); err != nil {
		return nil, err
	}
	readyCol, nameCol := -1, -1
	for i, c := range tab.ColumnDefinitions {
		switch c.Name {
		case "Ready":
			readyCol = i
		case "Name":
			nameCol = i
		}
	}
	if readyCol < 0 || nameCol < 0 {
		return nil, fmt.Errorf("the UserSync table has no Name or Ready column")
	}
	rows := make([]syncRow, 0, len(tab.Rows))
	for _, r := range tab.Rows {
		var row syncRow
		if max(readyCol, nameCol) < len(r.Cells) {
			row.name, _ = r.Cells[nameCol].(string)
			row.ready, _ = r.Cells[readyCol].(string)
		}
		if withVersions {
			var m metav1.PartialObjectMetadata
			if err := json.Unmarshal(r.Object.Raw, &m); err != nil {
				return nil, fmt.Errorf("decoding a table row's metadata: %w", err)
			}
			row.name, row.rv = m.Name, m.ResourceVersion
		}
		if row.name == "" {
			return nil, fmt.Errorf("a UserSync table row without a name: %v", r.Cells)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// verifyReady reads the UserSyncs in full and checks every one is Ready for
// its generation (status.observedGeneration == metadata.generation). It
// returns their resourceVersions.
func verifyReady(ctx context.Context, c client.Client, ns string, want int) (map[string]string, error) {
	var list usersv1.UserSyncList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	if len(list.Items) != want {
		return nil, fmt.Errorf("%d UserSyncs, want %d", len(list.Items), want)
	}
	rvs := make(map[string]string, len(list.Items))
	for i := range list.Items {
		us := &list.Items[i]
		cond := meta.FindStatusCondition(us.Status.Conditions, usersv1.ConditionReady)
		if cond == nil || cond.Status != metav1.ConditionTrue || us.Status.ObservedGeneration != us.Generation {
			return nil, fmt.Errorf("UserSync %s is not Ready for generation %d", us.Name, us.Generation)
		}
		rvs[us.Name] = us.ResourceVersion
	}
	return rvs, nil
}

// cleanup removes the point's objects once its operator is stopped: the
// finalizers the operator put on the UserSyncs are stripped, so that nothing
// of this point stays in the apiserver's cache for the next one.
func cleanup(ctx context.Context, c client.Client, ns string) error {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(usersv1.GroupVersion.WithKind("UserSyncList"))
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return err
	}
	strip := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))
	for i := range list.Items {
		m := &list.Items[i]
		m.SetGroupVersionKind(usersv1.GroupVersion.WithKind("UserSync"))
		if len(m.Finalizers) > 0 {
			if err := c.Patch(ctx, m, strip); err != nil {
				return err
			}
		}
	}
	if err := c.DeleteAllOf(ctx, &usersv1.UserSync{}, client.InNamespace(ns)); err != nil {
		return err
	}
	if err := c.DeleteAllOf(ctx, &usersv1.UserProvider{}, client.InNamespace(ns)); err != nil {
		return err
	}
	// Without a namespace controller the namespace stays Terminating; its
	// contents are gone.
	return c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
}
