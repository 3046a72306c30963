package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// opAttempts is how many times one Bulk operation is sent when the server
// answers it 429 or 5xx (or leaves it unanswered): the first send and two
// retries of that operation alone, 1 s and then 2 s later.
const opAttempts = 3

// limits bound a Bulk request: ops operations, size bytes (the server's
// maxPayloadSize: an operation larger than that alone fails), and learnt
// bytes (what a 413 the server did not announce taught; a request of one
// operation may exceed it).
type limits struct{ ops, size, learnt int }

// bulkID is the bulkId of a write: "w<index>", unique within one Apply and
// free of user data.
func bulkID(w *write) string { return fmt.Sprintf("w%d", w.i) }

// op is a write as a Bulk operation. The operations carry no version: the
// client stores no ETag, and a read per operation would undo the batching.
func (w *write) op() bulkOp {
	o := bulkOp{BulkID: bulkID(w), Path: "/Users/" + url.PathEscape(w.id)}
	switch w.kind {
	case kCreate:
		o.Method, o.Path, o.Data = http.MethodPost, "/Users", w.res
	case kUpdate:
		o.Method, o.Data = http.MethodPatch, patchReplace(w.res)
	case kDelete:
		o.Method = http.MethodDelete
	case kDeactivate:
		o.Method, o.Data = http.MethodPatch, patchDeactivate()
	}
	return o
}

// bulk sends the writes in Bulk calls within lim and returns an answer per
// write. An operation the server answers 429 or 5xx, or leaves out of its
// answer, is sent again alone (in the next requests), up to opAttempts
// times; a create among them is looked up first, as it may have been
// carried out. A 501 sends the writes left one call at a time.
func (c *Client) bulk(ctx context.Context, writes []*write, lim limits) ([]answer, error) {
	out := make([]answer, len(writes))
	idx := make(map[*write]int, len(writes))
	for j, w := range writes {
		idx[w] = j
	}
	set := func(w *write, a answer) { out[idx[w]] = a }
	pending := writes
	for attempt := 1; len(pending) > 0; attempt++ {
		again, rest, err := c.bulkRound(ctx, pending, lim, set)
		if err != nil {
			return nil, err
		}
		if len(rest) > 0 {
			as, err := c.singles(ctx, rest)
			if err != nil {
				return nil, err
			}
			for k, w := range rest {
				set(w, as[k])
			}
		}
		if attempt >= opAttempts || len(again) == 0 {
			break
		}
		if err := c.sleep(ctx, time.Duration(1<<(attempt-1))*time.Second); err != nil {
			break // the answers of the last round stand
		}
		if pending, err = c.recheck(ctx, again); err != nil {
			return nil, err
		}
		// The limits a 413 taught in the last round.
		ops, size, learnt, ok := c.useBulk(c.config())
		if !ok {
			break
		}
		lim = limits{ops: ops, size: size, learnt: learnt}
	}
	return out, nil
}

// config is what the server offers, as last read.
func (c *Client) config() spConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg == nil {
		return spConfig{}
	}
	return *c.cfg
}

// recheck prepares the writes of a retry round: a create that may have
// been carried out (a 5xx, or an operation left unanswered) is looked up
// by its externalId first, and updated when found.
func (c *Client) recheck(ctx context.Context, again []*write) ([]*write, error) {
	var looks []*write
	for _, w := range again {
		if w.kind == kCreate && w.uncertain {
			looks = append(looks, w)
		}
	}
	errs := make([]error, len(looks))
	c.parallel(len(looks), func(j int) {
		u, err := c.find(ctx, looks[j].key, looks[j].userName, false)
		if errs[j] = err; u != nil {
			looks[j].kind, looks[j].id = kUpdate, u.id
		}
	})
	drop := map[*write]bool{}
	for j, w := range looks {
		var ae *providers.AuthError
		switch err := errs[j]; {
		case errors.As(err, &ae):
			return nil, err
		case err != nil:
			// The earlier answer stands: the record stays uncertain.
			drop[w] = true
		}
	}
	out := again[:0:0]
	for _, w := range again {
		if !drop[w] {
			w.uncertain = false
			out = append(out, w)
		}
	}
	return out, nil
}

// bulkRound sends the writes once, in requests within lim, and records
// their answers with set. again lists the writes to send once more (429,
// 5xx, left unanswered); rest, the writes to send one call at a time (the
// server answered 501 to /Bulk).
func (c *Client) bulkRound(ctx context.Context, writes []*write, lim limits, set func(*write, answer)) (again, rest []*write, err error) {
	ops, err := encodeOps(writes)
	if err != nil {
		return nil, nil, err
	}
	queue := [][]*write{writes}
	for len(queue) > 0 {
		head := queue[0]
		queue = queue[1:]
		chunk, more, tooBig := pack(head, ops, lim)
		if len(more) > 0 {
			queue = append([][]*write{more}, queue...)
		}
		if tooBig {
			set(chunk[0], answer{status: http.StatusRequestEntityTooLarge,
				body: []byte(`{"detail":"the user alone exceeds the server's maxPayloadSize"}`)})
			continue
		}
		body := bulkBody(chunk, ops)
		resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodPost, Path: "/Bulk", RawBody: body,
			ContentType: "application/scim+json", Idempotent: !hasCreate(chunk), Endpoint: EndpointBulk, Records: len(chunk)})
		var ae *providers.AuthError
		switch {
		case errors.As(err, &ae):
			return nil, nil, err
		case err != nil:
			// No answer, or one the call's retries did not get past: the
			// request is never resent as a whole (its creates may have been
			// carried out); its records are reported, uncertain where so.
			for _, w := range chunk {
				set(w, answer{err: err})
			}
		case resp.Status == http.StatusRequestEntityTooLarge && len(chunk) > 1:
			// Too large for the server after all (a proxy's limit): the
			// operations it reports (none, usually) are settled, the others
			// go again in halves, and later requests are halved too.
			c.learn(len(chunk), len(body))
			lim.ops, lim.learnt = min(lim.ops, max(len(chunk)/2, 1)), min(lim.learnt, len(body)-1)
			left := chunk
			if br, err := decodeBulk(resp.Body); err == nil && len(br.Operations) > 0 {
				left = matchBulk(chunk, br, set)
			}
			queue = append(halves(left), queue...)
		case resp.Status == http.StatusNotImplemented:
			c.noBulk()
			rest = append(rest, chunk...)
			for _, q := range queue {
				rest = append(rest, q...)
			}
			return again, rest, nil
		case !resp.OK():
			for _, w := range chunk {
				set(w, answer{err: &providers.RecordError{Code: fmt.Sprintf("Bulk%d", resp.Status),
					Message: c.clean("the SCIM server refused a Bulk request: " + errorText(resp.Status, resp.Body))}})
			}
		default:
			again = append(again, c.settleBulk(chunk, resp.Body, set)...)
		}
	}
	return again, nil, nil
}

// settleBulk records the answers of a BulkResponse and returns the writes
// to send again: those answered 429 or 5xx, and those left unanswered
// (which the server did not process, RFC 7644 section 3.7.3, though a
// create among them is looked up before it is sent again).
func (c *Client) settleBulk(chunk []*write, body []byte, set func(*write, answer)) []*write {
	br, err := decodeBulk(body)
	if err != nil {
		for _, w := range chunk {
			set(w, answer{err: &providers.RecordError{Code: vendorhttp.CodeUnreachable, Uncertain: true,
				Message: c.clean("the SCIM server's Bulk answer could not be read: " + err.Error())}})
		}
		return nil
	}
	var again []*write
	record := func(w *write, a answer) {
		set(w, a)
		switch {
		case a.status <= 0:
			// Reported with a status that could not be read: perhaps
			// carried out.
			w.uncertain = true
			again = append(again, w)
		case a.status == http.StatusTooManyRequests || a.status >= 500:
			w.uncertain = w.uncertain || a.status >= 500
			again = append(again, w)
		}
	}
	for _, w := range matchBulk(chunk, br, record) {
		set(w, answer{})
		w.uncertain = true
		again = append(again, w)
	}
	return again
}

// matchBulk gives each write of chunk its operation's answer, matched by
// bulkId (never by position), and returns the writes the answer does not
// mention.
func matchBulk(chunk []*write, br bulkResponse, set func(*write, answer)) []*write {
	byID := make(map[string]*write, len(chunk))
	for _, w := range chunk {
		byID[bulkID(w)] = w
	}
	seen := map[*write]bool{}
	for _, r := range br.Operations {
		w := byID[r.BulkID]
		if w == nil || seen[w] {
			continue
		}
		seen[w] = true
		a := answer{status: int(r.Status), body: r.Response, bulk: true}
		if a.status >= 200 && a.status <= 299 {
			a.id = firstNonEmpty(idFromLocation(r.Location), idOf(r.Response))
		}
		set(w, a)
	}
	var left []*write
	for _, w := range chunk {
		if !seen[w] {
			left = append(left, w)
		}
	}
	return left
}

// decodeBulk reads a BulkResponse tolerantly: names without case,
// statuses as strings or integers, Operations missing or null as empty.
func decodeBulk(body []byte) (bulkResponse, error) {
	var br bulkResponse
	err := json.Unmarshal(body, &br)
	return br, err
}

// encodeOps encodes every write's operation once: packing measures them.
func encodeOps(writes []*write) (map[*write][]byte, error) {
	out := make(map[*write][]byte, len(writes))
	for _, w := range writes {
		b, err := json.Marshal(w.op())
		if err != nil {
			return nil, fmt.Errorf("encoding a Bulk operation: %w", err)
		}
		out[w] = b
	}
	return out, nil
}

// Bulk requests are these bytes around the operations, separated by
// commas: their encoded size is known before they are built.
var (
	bulkHead = []byte(`{"schemas":["` + schemaBulkReq + `"],"Operations":[`)
	bulkTail = []byte(`]}`)
)

// pack takes from writes, in order, the most operations that fit one
// request within lim (at least one), and returns them and the writes
// left. tooBig: the first operation alone exceeds the server's
// maxPayloadSize.
func pack(writes []*write, ops map[*write][]byte, lim limits) (chunk, rest []*write, tooBig bool) {
	size := len(bulkHead) + len(bulkTail)
	if size+len(ops[writes[0]]) > lim.size {
		return writes[:1], writes[1:], true
	}
	n := 0
	for n < len(writes) && n < lim.ops {
		next := size + len(ops[writes[n]])
		if n > 0 {
			next++ // the comma
		}
		if n > 0 && (next > lim.size || next > lim.learnt) {
			break
		}
		size, n = next, n+1
	}
	return writes[:n], writes[n:], false
}

// bulkBody is the encoded BulkRequest of chunk; failOnErrors is unset, so
// the server carries out every operation it can.
func bulkBody(chunk []*write, ops map[*write][]byte) []byte {
	var b bytes.Buffer
	b.Write(bulkHead)
	for k, w := range chunk {
		if k > 0 {
			b.WriteByte(',')
		}
		b.Write(ops[w])
	}
	b.Write(bulkTail)
	return b.Bytes()
}

func halves(chunk []*write) [][]*write {
	if len(chunk) < 2 {
		return [][]*write{chunk}
	}
	h := len(chunk) / 2
	return [][]*write{chunk[:h], chunk[h:]}
}

func hasCreate(chunk []*write) bool {
	for _, w := range chunk {
		if w.kind == kCreate {
			return true
		}
	}
	return false
}
