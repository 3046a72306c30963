package usercom

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// pendingKey is one (user, attribute, value) a plan must write.
type pendingKey struct {
	user  int64
	attr  string
	value string
}

// testValueKey tells values apart by JSON type, independently of valueKey.
func testValueKey(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "string:" + x
	case bool:
		return fmt.Sprintf("bool:%t", x)
	case float64:
		return fmt.Sprintf("number:%g", x)
	case int64:
		return fmt.Sprintf("number:%g", float64(x))
	case int:
		return fmt.Sprintf("number:%g", float64(x))
	default:
		panic(fmt.Sprintf("test value of type %T", v))
	}
}

// pendingOf is what writes ask for: the last value of every (user, attr).
func pendingOf(writes []AttrWrite) map[pendingKey]bool {
	type ua struct {
		user int64
		attr string
	}
	last := map[ua]any{}
	for _, w := range writes {
		last[ua{w.UserID, w.Attr}] = w.Value
	}
	out := map[pendingKey]bool{}
	for k, v := range last {
		out[pendingKey{k.user, k.attr, testValueKey(v)}] = true
	}
	return out
}

// bruteForce is the fewest calls any plan needs: it tries every set of
// users given a per-user call. It takes at most 16 users.
func bruteForce(t testing.TB, writes []AttrWrite, maxIDs int) int {
	t.Helper()
	pending := pendingOf(writes)
	var users []int64
	for k := range pending {
		if !slices.Contains(users, k.user) {
			users = append(users, k.user)
		}
	}
	if len(users) > 16 {
		t.Fatalf("brute force over %d users", len(users))
	}
	slices.Sort(users)
	best := -1
	for mask := 0; mask < 1<<len(users); mask++ {
		perUser := map[int64]bool{}
		for i, u := range users {
			if mask&(1<<i) != 0 {
				perUser[u] = true
			}
		}
		groups := map[[2]string]int{}
		for k := range pending {
			if !perUser[k.user] {
				groups[[2]string{k.attr, k.value}]++
			}
		}
		n := len(perUser)
		for _, members := range groups {
			n += (members + maxIDs - 1) / maxIDs
		}
		if best < 0 || n < best {
			best = n
		}
	}
	return best
}

// allMass is the number of calls without any per-user call.
func allMass(writes []AttrWrite, maxIDs int) int {
	groups := map[[2]string]int{}
	for k := range pendingOf(writes) {
		groups[[2]string{k.attr, k.value}]++
	}
	n := 0
	for _, members := range groups {
		n += (members + maxIDs - 1) / maxIDs
	}
	return n
}

// checkPlan verifies that calls write every pending (user, attribute,
// value) exactly once and respect maxIDs.
func checkPlan(t testing.TB, writes []AttrWrite, maxIDs int, calls []Call) {
	t.Helper()
	want := pendingOf(writes)
	got := map[pendingKey]int{}
	perUser := map[int64]bool{}
	massUsers := map[int64]bool{}
	for _, c := range calls {
		switch c := c.(type) {
		case Mass:
			if len(c.IDs) == 0 || len(c.IDs) > maxIDs {
				t.Fatalf("mass call with %d ids, maxIDs %d", len(c.IDs), maxIDs)
			}
			if !slices.IsSorted(c.IDs) {
				t.Fatalf("mass ids not ascending: %v", c.IDs)
			}
			for _, id := range c.IDs {
				got[pendingKey{id, c.Attr, testValueKey(c.Value)}]++
				massUsers[id] = true
			}
		case PerUser:
			if perUser[c.UserID] {
				t.Fatalf("user %d has two per-user calls", c.UserID)
			}
			perUser[c.UserID] = true
			for a, v := range c.Attrs {
				got[pendingKey{c.UserID, a, testValueKey(v)}]++
			}
		default:
			t.Fatalf("unknown call %T", c)
		}
	}
	for id := range perUser {
		if massUsers[id] {
			t.Errorf("user %d has a per-user call and mass calls", id)
		}
	}
	for k, n := range got {
		if n != 1 || !want[k] {
			t.Errorf("%+v written %d times, pending %v", k, n, want[k])
		}
	}
	for k := range want {
		if got[k] == 0 {
			t.Errorf("%+v never written", k)
		}
	}
}

// shared gives users first..last (inclusive) attr = value.
func shared(first, last int, attr string, value any) []AttrWrite {
	var out []AttrWrite
	for u := first; u <= last; u++ {
		out = append(out, AttrWrite{UserID: int64(u), Key: fmt.Sprint("k", u), Attr: attr, Value: value})
	}
	return out
}

// unique gives users first..last (inclusive) a value of attr of their own.
func unique(first, last int, attr string) []AttrWrite {
	var out []AttrWrite
	for u := first; u <= last; u++ {
		out = append(out, AttrWrite{UserID: int64(u), Key: fmt.Sprint("k", u), Attr: attr, Value: float64(1000 + u)})
	}
	return out
}

func join(parts ...[]AttrWrite) []AttrWrite { return slices.Concat(parts...) }

func TestPack(t *testing.T) {
	cases := []struct {
		name   string
		writes []AttrWrite
		maxIDs int
		// want is the expected number of calls; -1 means the brute-force
		// optimum (at most 12 users).
		want int
	}{
		{"nothing", nil, 100, 0},
		{"all shared", shared(1, 12, "plan", "pro"), 100, -1},
		{"all unique, one attribute each", unique(1, 12, "seat"), 100, -1},
		{"all unique, several attributes each", join(unique(1, 6, "seat"), unique(1, 6, "desk"), unique(1, 6, "room")), 100, -1},
		{"shared and unique", join(shared(1, 12, "plan", "pro"), unique(9, 12, "seat")), 100, -1},
		{"two shared values", join(shared(1, 6, "plan", "pro"), shared(7, 12, "plan", "free")), 100, -1},
		{"a user with several unique values", join(shared(1, 6, "plan", "pro"), unique(1, 1, "seat"), unique(1, 1, "desk"), unique(1, 1, "room")), 100, -1},
		{"a user with one unique and one shared value", join(shared(1, 6, "plan", "pro"), unique(6, 6, "seat")), 100, -1},
		{"maxIDs 5, 5 members", shared(1, 5, "plan", "pro"), 5, -1},
		{"maxIDs 5, 6 members", shared(1, 6, "plan", "pro"), 5, -1},
		{"maxIDs 5, 10 members", shared(1, 10, "plan", "pro"), 5, -1},
		{"maxIDs 5, 6 members, one with a unique value", join(shared(1, 6, "plan", "pro"), unique(6, 6, "seat")), 5, -1},
		{"maxIDs 5, 7 members, two with unique values", join(shared(1, 7, "plan", "pro"), unique(6, 7, "seat")), 5, -1},
		{"maxIDs 5, 11 members, one with a unique value", join(shared(1, 11, "plan", "pro"), unique(11, 11, "seat")), 5, -1},
		{"maxIDs 2, overlapping groups", join(shared(1, 3, "plan", "pro"), shared(2, 4, "tier", "gold"), shared(3, 5, "region", "eu")), 2, -1},
		{"maxIDs 1", join(shared(1, 4, "plan", "pro"), shared(1, 2, "tier", "gold")), 1, -1},
		{"typed values differ", join(shared(1, 3, "flag", "1"), shared(4, 6, "flag", float64(1)), shared(7, 9, "flag", true), shared(10, 12, "flag", nil)), 100, -1},
		{"equal numbers of two Go types group", join(shared(1, 6, "seat", float64(3)), shared(7, 12, "seat", int64(3))), 100, 1},
		{"the last write of a user's attribute wins", join(shared(1, 6, "plan", "pro"), shared(1, 6, "plan", "free")), 100, 1},
		{"100 members", shared(1, 100, "plan", "pro"), 100, 1},
		{"101 members", shared(1, 101, "plan", "pro"), 100, 2},
		{"200 members", shared(1, 200, "plan", "pro"), 100, 2},
		// All mass costs 3; a per-user call for user 101 saves one.
		{"101 members, one with a unique value", join(shared(1, 101, "plan", "pro"), unique(101, 101, "seat")), 100, 2},
		{"201 members, 20 unique", join(shared(1, 201, "plan", "pro"), unique(182, 201, "seat")), 100, 22},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := Pack(tc.writes, tc.maxIDs)
			checkPlan(t, tc.writes, tc.maxIDs, calls)
			want := tc.want
			if want < 0 {
				want = bruteForce(t, tc.writes, tc.maxIDs)
			}
			if len(calls) != want {
				t.Errorf("%d calls, want %d: %v", len(calls), want, calls)
			}
		})
	}
}

// TestPackAgainstBruteForce compares Pack with the optimum on random small
// inputs with small maxIDs, where thresholds interact most and packing is
// hardest. Pack is a local search: it must always be valid and never worse
// than all-mass, and optimal on nearly every input.
func TestPackAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const runs = 4000
	gaps := map[int]int{}
	for range runs {
		users := 1 + r.IntN(10)
		attrs := 1 + r.IntN(4)
		values := 1 + r.IntN(3)
		maxIDs := 1 + r.IntN(4)
		var writes []AttrWrite
		for u := range users {
			for a := range attrs {
				if r.IntN(3) == 0 {
					continue
				}
				var v any = float64(r.IntN(values))
				if r.IntN(3) == 0 {
					v = fmt.Sprint("own-", u, "-", a)
				}
				writes = append(writes, AttrWrite{UserID: int64(100 + u), Attr: fmt.Sprint("a", a), Value: v})
			}
		}
		calls := Pack(writes, maxIDs)
		checkPlan(t, writes, maxIDs, calls)
		if n := allMass(writes, maxIDs); len(calls) > n {
			t.Fatalf("maxIDs %d: %d calls, all-mass %d: %v", maxIDs, len(calls), n, writes)
		}
		gaps[len(calls)-bruteForce(t, writes, maxIDs)]++
	}
	t.Logf("calls above the optimum on %d random inputs (maxIDs 1-4): %v", runs, gaps)
	if gaps[0] < runs*99/100 {
		t.Errorf("optimal on only %d of %d inputs", gaps[0], runs)
	}
}

func TestPackIsDeterministic(t *testing.T) {
	writes := join(shared(1, 150, "plan", "pro"), unique(140, 150, "seat"), unique(140, 145, "desk"), shared(1, 30, "active", true))
	want := Pack(writes, 100)
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		shuffled := slices.Clone(writes)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := Pack(shuffled, 100); !reflect.DeepEqual(got, want) {
			t.Fatalf("the plan depends on the order of the writes")
		}
	}
	// Mass calls first, by attribute; then per-user calls by id.
	var attrs []string
	var ids []int64
	for _, c := range want {
		switch c := c.(type) {
		case Mass:
			if len(ids) > 0 {
				t.Fatalf("mass call after a per-user call: %v", want)
			}
			attrs = append(attrs, c.Attr)
		case PerUser:
			ids = append(ids, c.UserID)
		}
	}
	if !slices.IsSorted(attrs) || !slices.IsSorted(ids) || len(ids) == 0 {
		t.Errorf("mass calls %v, per-user calls %v", attrs, ids)
	}
}

// benchWrites is a realistic change set: every user changes its plan and
// country (shared values) and active flag, some a seat number and a score
// of their own.
func benchWrites(n int) []AttrWrite {
	r := rand.New(rand.NewPCG(7, 9))
	var ws []AttrWrite
	for u := int64(1); len(ws) < n; u++ {
		add := func(a string, v any) {
			if len(ws) < n {
				ws = append(ws, AttrWrite{UserID: u, Key: fmt.Sprint("u", u), Attr: a, Value: v})
			}
		}
		add("plan", []string{"free", "pro", "enterprise"}[r.IntN(3)])
		add("country", fmt.Sprint("c", r.IntN(20)))
		if r.IntN(4) == 0 {
			add("seat", float64(u))
		}
		add("active", r.IntN(2) == 0)
		if r.IntN(3) == 0 {
			add("score", r.Float64())
		}
	}
	return ws
}

func BenchmarkPack(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		writes := benchWrites(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			var calls []Call
			for b.Loop() {
				calls = Pack(writes, MaxBatch)
			}
			b.ReportMetric(float64(len(calls)), "calls")
			b.ReportMetric(float64(allMass(writes, MaxBatch)), "all-mass-calls")
		})
	}
}
