package controller

import (
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// An idle loop is one that sent nothing to the vendor and wrote nothing to
// the API server.
//
// One input is the clock alone: a drift detection pass (drift.go) comes due
// when spec.driftDetection.interval has passed since the last one, whatever
// the other inputs. A loop for which a pass is due is never skipped, and an
// idle loop is remembered only until the earlier of its next record retry
// and its next pass. Between passes the idle resync of unchanged users
// costs what it did. Planning is a pure function of the loop's inputs and the
// time, so a loop whose inputs are those of the previous, idle, loop, and
// for which no record retry has come due, would be idle too: it is skipped
// before anything is planned. This is what makes a resync of 100,000
// unchanged users cost a list of the UserSyncs and not a plan of every user.
//
// The inputs are every object the plan reads, by resourceVersion (the
// UserSyncs' spec, status, annotations and deletion; the provider's spec
// and status), and what the loop derived from outside them: the vendor
// client (rebuilt when the Secret or the provider changes), why the provider
// cannot be used, which UserSyncs it refuses and why, and the create
// intents in flight.
type idleLoops struct {
	mu    sync.Mutex
	byKey map[providerKey]idleLoop
}

type idleLoop struct {
	inputs    uint64
	nextRetry time.Time
}

// skip reports whether the loop's inputs are those of the last idle loop of
// its provider and no retry is due; it returns when the next retry is. A
// loop that is not skipped forgets the idle one: only a loop that ends idle
// (done) is remembered, never one that failed half-way.
func (c *idleLoops) skip(l *loop, inputs uint64) (bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	last, ok := c.byKey[l.key]
	if !ok || last.inputs != inputs || (!last.nextRetry.IsZero() && !l.now.Before(last.nextRetry)) {
		delete(c.byKey, l.key)
		return false, time.Time{}
	}
	return true, last.nextRetry
}

// done records how a loop ended: idle loops are remembered, others forget
// the provider's last idle loop.
func (c *idleLoops) done(l *loop, inputs uint64, idle bool, nextRetry time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil {
		c.byKey = map[providerKey]idleLoop{}
	}
	if !idle {
		delete(c.byKey, l.key)
		return
	}
	c.byKey[l.key] = idleLoop{inputs: inputs, nextRetry: nextRetry}
}

// inputs is a digest of everything the loop's plan depends on besides the
// time.
func (l *loop) inputs() uint64 {
	h := fnv.New64a()
	field := func(s string) {
		_, _ = io.WriteString(h, s)
		_, _ = h.Write([]byte{0})
	}
	if p := l.provider; p != nil {
		field(string(p.obj.GetUID()))
		field(p.obj.GetResourceVersion())
	}
	field(fmt.Sprintf("%p", l.vendor))
	if l.notReady != nil {
		field(l.notReady.Reason)
		field(l.notReady.Message)
	}
	// The cache lists the UserSyncs in no fixed order; the plan does not
	// depend on it.
	syncs := slices.Clone(l.syncs)
	slices.SortFunc(syncs, func(a, b *syncView) int { return strings.Compare(string(a.obj.UID), string(b.obj.UID)) })
	for _, v := range syncs {
		field(string(v.obj.UID))
		field(v.obj.ResourceVersion)
		field(fmt.Sprint(v.listed))
		field(v.refusedReason)
		field(v.refusedMessage)
	}
	inFlight := make([]string, 0, len(l.inFlight))
	for uid := range l.inFlight {
		inFlight = append(inFlight, string(uid))
	}
	slices.Sort(inFlight)
	for _, uid := range inFlight {
		field(uid)
	}
	return h.Sum64()
}

// settled reports whether a loop may be remembered as idle: nothing was
// written and no UserSync is being deleted (its finalizer goes once its
// records are gone).
func (l *loop) settled(changes int) bool {
	if changes > 0 || l.wrote.Load() > 0 || l.yielded {
		return false
	}
	for _, v := range l.syncs {
		if !v.obj.DeletionTimestamp.IsZero() {
			return false
		}
	}
	return true
}
