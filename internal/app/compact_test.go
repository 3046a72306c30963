package app

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"k8s.io/apimachinery/pkg/api/equality"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// decodedSync is a UserSync as the cache's decoder makes it: 500 users and
// 500 records, half of them held with one message, the rest synced.
func decodedSync(t testing.TB) *usersv1.UserSync {
	t.Helper()
	var users, results []string
	for i := range 500 {
		users = append(users, fmt.Sprintf(`{"key":"u%d","email":"u%d@example.com"}`, i, i))
		rec := fmt.Sprintf(`{"provider":"UserProvider/ns/hs","key":"u%d","state":"Synced","action":"Create","externalID":"%d","hash":"h%d","lastSyncTime":"2026-12-03T10:00:00Z"}`, i, 1000+i, i)
		if i%2 == 1 {
			rec = fmt.Sprintf(`{"provider":"UserProvider/ns/hs","key":"u%d","state":"Pending","reason":"ProviderNotReady","message":"Secret ns/hs not found","lastSyncTime":"2026-12-03T09:00:00Z"}`, i)
		}
		results = append(results, rec)
	}
	doc := `{"metadata":{"name":"a","uid":"u1","generation":1},"spec":{"users":[` + strings.Join(users, ",") +
		`]},"status":{"results":[` + strings.Join(results, ",") + `]}}`
	us := &usersv1.UserSync{}
	if err := json.Unmarshal([]byte(doc), us); err != nil {
		t.Fatal(err)
	}
	return us
}

// TestCompactStatus: the compacted status holds the same values, in lists of
// their length, with one copy of each repeated string and time.
func TestCompactStatus(t *testing.T) {
	us := decodedSync(t)
	want := us.DeepCopy()
	if cap(us.Status.Results) == len(us.Status.Results) || cap(us.Spec.Users) == len(us.Spec.Users) {
		t.Fatal("the decoder left no room to reclaim: the test proves nothing")
	}
	compactStatus(us)
	compactSpec(&us.Spec)
	if !equality.Semantic.DeepEqual(us, want) {
		t.Fatal("compaction changed a value")
	}
	if cap(us.Status.Results) != len(us.Status.Results) || cap(us.Spec.Users) != len(us.Spec.Users) {
		t.Errorf("lists keep room: results %d/%d, users %d/%d", len(us.Status.Results), cap(us.Status.Results),
			len(us.Spec.Users), cap(us.Spec.Users))
	}
	rs := us.Status.Results
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	for _, i := range []int{2, 4, 498} {
		if !same(rs[0].Provider, rs[i].Provider) || !same(string(rs[0].State), string(rs[i].State)) || !same(rs[0].Action, rs[i].Action) {
			t.Errorf("record %d holds its own copy of a repeated string", i)
		}
		if rs[0].LastSyncTime != rs[i].LastSyncTime {
			t.Errorf("record %d holds its own copy of an equal time", i)
		}
	}
	if !same(rs[1].Message, rs[3].Message) || !same(rs[1].Reason, rs[499].Reason) {
		t.Error("held records hold their own copies of the message or reason")
	}
	if rs[0].LastSyncTime == rs[1].LastSyncTime {
		t.Error("different times share one")
	}
}

// BenchmarkCachedSync reports what a cached 500-user UserSync (the users
// and records of decodedSync) keeps in memory, as decoded and as the
// cache's transform leaves it: retained-B/op, measured by the live heap
// with 20 of them held.
func BenchmarkCachedSync(b *testing.B) {
	for _, compact := range []bool{false, true} {
		b.Run(fmt.Sprintf("compact=%v", compact), func(b *testing.B) {
			const held = 20
			var retained float64
			for b.Loop() {
				var m0, m1 runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&m0)
				objs := make([]*usersv1.UserSync, held)
				for i := range objs {
					objs[i] = decodedSync(b)
					if compact {
						compactStatus(objs[i])
						compactSpec(&objs[i].Spec)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&m1)
				retained = float64(m1.HeapAlloc-m0.HeapAlloc) / held
				runtime.KeepAlive(objs)
			}
			b.ReportMetric(retained, "retained-B/op")
		})
	}
}
