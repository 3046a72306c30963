package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// TestIdleLoops: a loop is skipped only when every input of the last idle
// loop is the same and no retry is due; any change of an input plans again.
func TestIdleLoops(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := func() *loop {
		p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{UID: "p", ResourceVersion: "10"}}
		l := &loop{key: providerKey{Kind: usersv1.KindUserProvider, Namespace: "ns", Name: "p"}, now: t0,
			provider: &providerView{obj: p, status: &p.Status}, inFlight: map[types.UID]time.Time{}}
		for _, n := range []string{"a", "b"} {
			l.syncs = append(l.syncs, &syncView{listed: true, obj: &usersv1.UserSync{
				ObjectMeta: metav1.ObjectMeta{UID: types.UID(n), ResourceVersion: "5"}}})
		}
		return l
	}
	cases := map[string]struct {
		change    func(*loop)
		nextRetry time.Time
		skip      bool
	}{
		"nothing changed":                             {change: func(*loop) {}, skip: true},
		"nothing changed, retry later":                {change: func(*loop) {}, nextRetry: t0.Add(time.Second), skip: true},
		"a retry is due":                              {change: func(*loop) {}, nextRetry: t0, skip: false},
		"a UserSync changed":                          {change: func(l *loop) { l.syncs[1].obj.ResourceVersion = "6" }},
		"a UserSync appeared":                         {change: func(l *loop) { l.syncs = append(l.syncs, &syncView{obj: &usersv1.UserSync{}}) }},
		"a UserSync left":                             {change: func(l *loop) { l.syncs = l.syncs[:1] }},
		"a UserSync stopped listing it":               {change: func(l *loop) { l.syncs[0].listed = false }},
		"a namespace is refused":                      {change: func(l *loop) { l.syncs[0].refusedReason = usersv1.ReasonNotPermitted }},
		"the provider changed":                        {change: func(l *loop) { l.provider.obj.SetResourceVersion("11") }},
		"the provider is not ready":                   {change: func(l *loop) { l.notReady = &notReady{Reason: "Unauthorized"} }},
		"the client was rebuilt":                      {change: func(l *loop) { l.vendor = &fakeClient{} }},
		"creates are in flight":                       {change: func(l *loop) { l.inFlight["a"] = time.Time{} }},
		"the provider is gone":                        {change: func(l *loop) { l.provider = nil }},
		"a not-ready message changed":                 {change: func(l *loop) { l.notReady = &notReady{Reason: "Unauthorized", Message: "x"} }},
		"a refusal message changed":                   {change: func(l *loop) { l.syncs[1].refusedMessage = "namespace x not found" }},
		"another UserSync with its UID":               {change: func(l *loop) { l.syncs[0].obj.UID = "c" }},
		"the same UserSyncs, listed in another order": {change: func(l *loop) { l.syncs[0], l.syncs[1] = l.syncs[1], l.syncs[0] }, skip: true},
		"an idle loop of another one":                 {change: func(l *loop) { l.key.Name = "q" }},
		"a later resync, nothing changed":             {change: func(l *loop) { l.now = t0.Add(time.Hour) }, skip: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var c idleLoops
			first := base()
			c.done(first, first.inputs(), first.settled(0), tc.nextRetry)
			l := base()
			tc.change(l)
			if got, _ := c.skip(l, l.inputs()); got != tc.skip {
				t.Fatalf("skip = %v, want %v", got, tc.skip)
			}
		})
	}

	for name, end := range map[string]func(*loop) bool{
		"a loop that wrote is not remembered":        func(l *loop) bool { l.wrote.Add(1); return l.settled(0) },
		"a loop that sent changes is not remembered": func(l *loop) bool { return l.settled(3) },
	} {
		t.Run(name, func(t *testing.T) {
			var c idleLoops
			l := base()
			c.done(l, l.inputs(), end(l), time.Time{})
			if got, _ := c.skip(base(), base().inputs()); got {
				t.Fatal("skipped after a loop that was not idle")
			}
		})
	}
	t.Run("a loop that is not skipped forgets the idle one", func(t *testing.T) {
		var c idleLoops
		l := base()
		c.done(l, l.inputs(), true, time.Time{})
		changed := base()
		changed.syncs[0].obj.ResourceVersion = "7"
		if got, _ := c.skip(changed, changed.inputs()); got {
			t.Fatal("skipped a changed loop")
		}
		// The changed loop failed half-way; the old inputs come back.
		if got, _ := c.skip(base(), base().inputs()); got {
			t.Fatal("skipped on the strength of an idle loop older than a loop that did not finish")
		}
	})
}
