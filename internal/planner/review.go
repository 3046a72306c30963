package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers"
)

// Review is what a UserSync in mode Plan would send to one provider: the
// counts, the changes (for the vendor's call count), and the token that
// names exactly this set of changes.
type Review struct {
	Creates, Updates, Deletes int
	// Retries counts the changes (of Creates, Updates and Deletes) that
	// send again a write or deletion an earlier loop already sent with the
	// same content and whose outcome was not a success: the rest of an
	// approved plan that did not complete in its loop (a transient error, a
	// create whose lookup must wait, a timeout), or of writes made under
	// mode Apply. They are no new change to review: the token leaves them
	// out, and they need no approval.
	Retries int
	Changes []providers.Change
	Token   string
}

// Empty reports whether nothing would be sent.
func (r Review) Empty() bool { return r.Creates+r.Updates+r.Deletes == 0 }

// NeedsApproval reports whether something new would be sent: a change that
// is not a retry.
func (r Review) NeedsApproval() bool { return r.Creates+r.Updates+r.Deletes > r.Retries }

// Retries reports whether the item sends again what an earlier loop sent
// with the same content: a write whose record counts attempts (they are
// reset when the content changes), or a deletion under way.
func (it *Item) Retries() bool {
	switch it.Kind {
	case Write:
		return it.Record.Attempts > 0
	case Remove:
		return it.Record.State == StateDeleting && it.Record.Attempts > 0
	}
	return false
}

// ReviewOf summarises the writes and deletions of items (one sync's items
// of a plan computed without a hold). The token is a digest of the
// provider, the UserSync's generation and every (key, operation, content
// hash) that is not a retry: a spec edit, or a vendor that moved on
// (drift), makes a new one, so an approval applies exactly what was
// reviewed and only once; what an approved apply left unfinished is
// retried without a new approval, and never changes the token.
func ReviewOf(provider string, generation int64, items []Item) Review {
	var r Review
	lines := make([]string, 0, len(items))
	for i := range items {
		it := &items[i]
		if it.Kind != Write && it.Kind != Remove {
			continue
		}
		switch it.Change.Op {
		case providers.OpCreate:
			r.Creates++
		case providers.OpUpdate:
			r.Updates++
		case providers.OpDelete:
			r.Deletes++
		}
		r.Changes = append(r.Changes, it.Change)
		if it.Retries() {
			r.Retries++
			continue
		}
		lines = append(lines, it.Key+"\x00"+string(it.Change.Op)+"\x00"+it.hash+"\x00"+it.Record.ExternalID)
	}
	if len(lines) == 0 {
		return r
	}
	slices.Sort(lines)
	h := sha256.New()
	h.Write([]byte(provider + "\x00" + strconv.FormatInt(generation, 10) + "\n" + strings.Join(lines, "\n")))
	r.Token = hex.EncodeToString(h.Sum(nil))[:12]
	return r
}

// ApprovedBy reports whether the approve-plan annotation's value (tokens
// separated by commas) names token.
func ApprovedBy(annotation, token string) bool {
	if token == "" {
		return false
	}
	for _, t := range strings.Split(annotation, ",") {
		if strings.TrimSpace(t) == token {
			return true
		}
	}
	return false
}

// Calls is how many vendor calls changes take: the vendor client's own
// count (providers.CallPlanner, which knows its packing and lookups), else
// a call per batch of each operation. batch <= 0 means the vendors'
// default of 100.
func Calls(vendor providers.Client, batch int, chs []providers.Change) int {
	if cp, ok := vendor.(providers.CallPlanner); ok {
		return cp.PlanCalls(chs)
	}
	if batch <= 0 {
		batch = 100
	}
	per := map[providers.Op]int{}
	for _, ch := range chs {
		per[ch.Op]++
	}
	n := 0
	for _, k := range per {
		n += (k + batch - 1) / batch
	}
	return n
}
