package declared

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
)

// benchSyncs are n users in UserSyncs of 500, each with a title, a plan
// and a team, all synced with the hashes of mapping m.
func benchSyncs(n int, m *Mapping) []*usersv1.UserSync {
	syncs := make([]*usersv1.UserSync, n/500)
	for i := range syncs {
		us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("s%d", i),
			UID: types.UID(fmt.Sprintf("uid-%d", i))}}
		for j := range 500 {
			key := fmt.Sprintf("u%d-%d", i, j)
			plan := "free"
			if j%5 == 0 {
				plan = "pro"
			}
			us.Spec.Users = append(us.Spec.Users, usersv1.User{Key: key, Email: key + "@example.com", FirstName: "First" + key, LastName: "Last",
				Attributes: map[string]usersv1.AttributeValue{"title": usersv1.StringValue("Engineer"),
					"plan": usersv1.StringValue(plan), "team": usersv1.StringValue("core")}})
		}
		syncs[i] = us
		for _, d := range Users(us, m, nil, false) {
			us.Status.Results = append(us.Status.Results, usersv1.RecordResult{Provider: "UserProvider/hs", Key: d.User.Key,
				ExternalID: "1", State: usersv1.StateSynced, Action: "Created", Hash: d.Hash})
		}
	}
	return syncs
}

// BenchmarkFullPlan is the work of a loop that plans every user again (a
// new operator, a changed provider), as the engine's plannerInput does it:
// each UserSync's records read from its status and its users converted for
// the provider (mapped, hashed, checked), then the plan computed. The
// mapping's cost is the difference between its two cases (issue 18's
// budget: at most 20% more; docs/benchmarks.md has the figures).
func BenchmarkFullPlan(b *testing.B) {
	compile := func(entries ...usersv1.AttributeMapping) *Mapping {
		m, err := Compile(&usersv1.ProviderSpec{UnmappedAttributes: usersv1.UnmappedDrop, AttributeMapping: entries}, nil)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	rename := usersv1.AttributeMapping{Attribute: "title", To: "hs_job_title"}
	tier := usersv1.AttributeMapping{Expression: "user.attributes.plan == 'pro' ? 'Enterprise' : 'Standard'", To: "tier"}
	createOnly := usersv1.AttributeMapping{Attribute: "team", To: "team_name", CreateOnly: true}
	display := usersv1.AttributeMapping{Expression: "user.firstName + ' ' + user.lastName", To: "display_name"}
	// mapping: a rename, an expression over a plan (two values: its
	// results are remembered) and a createOnly entry; per-user: the same
	// and an expression whose value differs for every user (evaluated
	// 100,000 times).
	mappings := []struct {
		name string
		m    *Mapping
	}{{"none", nil}, {"mapping", compile(rename, tier, createOnly)}, {"per-user", compile(rename, tier, createOnly, display)}}
	for _, n := range []int{10000, 100000} {
		for _, c := range mappings {
			syncs := benchSyncs(n, c.m)
			b.Run(fmt.Sprintf("%s-%d", c.name, n), func(b *testing.B) {
				b.ReportAllocs()
				// CPU time, not the clock: the figure must hold on a
				// machine shared with the API server (or other builds).
				start := cpuTime()
				defer func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }()
				for b.Loop() {
					in := planner.Input{Now: time.Unix(0, 0), Syncs: make([]planner.Sync, len(syncs))}
					for i, us := range syncs {
						in.Syncs[i] = planner.Sync{Name: us.Name, Records: RecordsOf(us, "UserProvider/hs"), Users: Users(us, c.m, nil, false)}
					}
					if p := planner.Compute(in); len(p.Changes()) != 0 {
						b.Fatalf("%d changes, want none", len(p.Changes()))
					}
				}
			})
		}
	}
}

// cpuTime is the process's CPU time (user and system) in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
