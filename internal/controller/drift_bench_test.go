package controller

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/declared"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// replayTransport answers the calls of a pass with the answers the emulator
// gave to the same calls, in order: the benchmark then measures the
// operator's side of a pass alone (building the reads, decoding the
// answers, comparing), not the emulator's.
type replayTransport struct {
	mu      sync.Mutex
	base    http.RoundTripper
	record  bool
	answers [][]byte
	next    int
}

func (t *replayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.record {
		resp, err := t.base.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		t.answers = append(t.answers, body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp, nil
	}
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	body := t.answers[t.next%len(t.answers)]
	t.next++
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": []string{"application/json"}}, ContentLength: int64(len(body)),
		Body: io.NopCloser(bytes.NewReader(body)), Request: req}, nil
}

// benchSyncs are UserSyncs of 500 users shaped as hack/bench makes them:
// an email, names, and two or three attributes (a string, a number, a
// boolean).
func benchSyncs(n int) []*usersv1.UserSync {
	const per = 500
	teams := []string{"platform", "sales", "support", "finance", "research"}
	var out []*usersv1.UserSync
	for s := 0; s*per < n; s++ {
		users := make([]usersv1.User, min(per, n-s*per))
		for i := range users {
			key := fmt.Sprintf("s%d-u%d", s, i)
			attrs := map[string]usersv1.AttributeValue{
				"team": usersv1.StringValue(teams[(s+i)%len(teams)]),
				"seat": usersv1.NumberValue(float64(s*per + i)),
			}
			if i%2 == 0 {
				attrs["admin"] = usersv1.BoolValue(i%10 == 0)
			}
			users[i] = usersv1.User{Key: key, Email: key + "@bench.example.com", FirstName: fmt.Sprintf("First%d", i),
				LastName: fmt.Sprintf("Last%d", s), Attributes: attrs}
		}
		out = append(out, &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("team-%04d", s)},
			Spec: usersv1.UserSyncSpec{Users: users}})
	}
	return out
}

// BenchmarkVerifyPass measures the operator's CPU and allocations for one
// drift detection pass over N converged HubSpot users that nothing changed
// (docs/benchmarks.md, verification): the read requests built from the
// spec, the batch/read calls encoded, their answers decoded and compared,
// the observations folded into the records. The answers are the
// emulator's, recorded once and replayed.
func BenchmarkVerifyPass(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			l, in, tr := verifyPassSetup(b, n)
			r := &ProviderReconciler{}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p := r.newPass(ctx, l, &in)
				if complete := p.run(); !complete || p.failed || p.t.read != n || p.t.changed+p.t.missing != 0 {
					b.Fatalf("pass: %+v complete=%v failed=%v", p.t, complete, p.failed)
				}
			}
			b.ReportMetric(float64(len(tr.answers)), "calls/op")
		})
	}
}

func verifyPassSetup(b *testing.B, n int) (*loop, planner.Input, *replayTransport) {
	b.Helper()
	em := hsemu.New(hsemu.Options{Tokens: map[string][]string{"tok": hubspot.DefaultScopes}, RateLimit: -1, DuplicateEmails: true})
	em.Start()
	b.Cleanup(em.Close)
	tr := &replayTransport{base: http.DefaultTransport, record: true}
	spec := usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot}
	c, err := hubspot.Factory{}.New(providers.Config{Endpoint: em.URL(), Credentials: map[string][]byte{"token": []byte("tok")},
		Spec: spec, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		b.Fatal(err)
	}
	l := &loop{key: providerKey{Kind: usersv1.KindUserProvider, Namespace: "bench", Name: "hs"},
		provider: &providerView{spec: &spec, status: &usersv1.ProviderStatus{}}, vendor: c}
	in := planner.Input{}
	for _, us := range benchSyncs(n) {
		us.UID = types.UID("uid-" + us.Name)
		desired := desiredUsers(us, c, nil)
		recs := make(map[string]planner.Record, len(us.Spec.Users))
		for i := range us.Spec.Users {
			// The user as the client writes it (the emulator takes it
			// directly: creating 100,000 users through Apply takes
			// minutes).
			u := declared.Written(us, i, nil, providers.OpCreate)
			props := map[string]string{hubspot.PropEmail: u.Email, hubspot.PropFirstName: u.FirstName, hubspot.PropLastName: u.LastName}
			for k, v := range u.Attributes {
				props[k] = providers.Scalar(v)
			}
			recs[u.Key] = planner.Record{Key: u.Key, ExternalID: em.Put(props), State: planner.StateSynced, Hash: desired[i].Hash}
		}
		l.syncs = append(l.syncs, &syncView{obj: us, listed: true})
		in.Syncs = append(in.Syncs, planner.Sync{Name: us.Namespace + "/" + us.Name, Users: desired, Records: recs})
	}
	// Record the answers of one pass, then replay them.
	ctx := context.Background()
	tr.mu.Lock()
	tr.answers = nil
	tr.mu.Unlock()
	p := (&ProviderReconciler{}).newPass(ctx, l, &in)
	if complete := p.run(); !complete || p.failed || p.t.read != n || p.t.changed+p.t.missing != 0 {
		b.Fatalf("recording pass: %+v complete=%v failed=%v", p.t, complete, p.failed)
	}
	tr.mu.Lock()
	tr.record = false
	tr.mu.Unlock()
	return l, in, tr
}
