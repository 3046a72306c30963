package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// bulkID is the bulkId of a write: "w<index>", unique within one Apply and
// free of user data.
func bulkID(w *write) string { return fmt.Sprintf("w%d", w.i) }

// op is a write as a Bulk operation.
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

// bulk sends the writes in Bulk calls of at most maxOps operations and
// maxBytes bytes, and returns an answer per write. A 413 halves the chunk;
// a 501 sends the chunk, and every later write, one call at a time.
func (c *Client) bulk(ctx context.Context, writes []*write, maxOps, maxBytes int) ([]answer, error) {
	out := make([]answer, len(writes))
	idx := make(map[*write]int, len(writes))
	for j, w := range writes {
		idx[w] = j
	}
	var queue [][]*write
	for start := 0; start < len(writes); start += maxOps {
		queue = append(queue, writes[start:min(start+maxOps, len(writes))])
	}
	for len(queue) > 0 {
		chunk := queue[0]
		queue = queue[1:]
		body, err := json.Marshal(bulkRequest(chunk))
		if err != nil {
			return nil, fmt.Errorf("encoding a Bulk request: %w", err)
		}
		if len(body) > maxBytes {
			if len(chunk) == 1 {
				out[idx[chunk[0]]] = answer{status: http.StatusRequestEntityTooLarge,
					body: []byte(`{"detail":"the user alone exceeds the server's maxPayloadSize"}`)}
				continue
			}
			queue = append(halves(chunk), queue...)
			continue
		}
		resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodPost, Path: "/Bulk", RawBody: body,
			ContentType: "application/scim+json", Idempotent: !hasCreate(chunk), Endpoint: EndpointBulk, Records: len(chunk)})
		var ae *providers.AuthError
		switch {
		case errors.As(err, &ae):
			return nil, err
		case err != nil:
			for _, w := range chunk {
				out[idx[w]] = answer{err: err}
			}
			continue
		case resp.Status == http.StatusRequestEntityTooLarge && len(chunk) > 1:
			queue = append(halves(chunk), queue...)
			continue
		case resp.Status == http.StatusNotImplemented:
			c.noBulk()
			rest := chunk
			for _, q := range queue {
				rest = append(rest[:len(rest):len(rest)], q...)
			}
			queue = nil
			as, err := c.singles(ctx, rest)
			if err != nil {
				return nil, err
			}
			for k, w := range rest {
				out[idx[w]] = as[k]
			}
			continue
		case !resp.OK():
			for _, w := range chunk {
				out[idx[w]] = answer{err: &providers.RecordError{Code: fmt.Sprintf("Bulk%d", resp.Status),
					Message: c.clean("the SCIM server refused a Bulk request: " + errorText(resp.Status, resp.Body))}}
			}
			continue
		}
		c.matchBulk(chunk, resp.Body, func(w *write, a answer) { out[idx[w]] = a })
	}
	return out, nil
}

// matchBulk gives each write of chunk its operation's answer, matched by
// bulkId; an operation the answer does not mention gets status 0 (not
// processed). An unreadable answer leaves every write uncertain.
func (c *Client) matchBulk(chunk []*write, body []byte, set func(*write, answer)) {
	var br bulkResponse
	if err := json.Unmarshal(body, &br); err != nil {
		for _, w := range chunk {
			set(w, answer{err: &providers.RecordError{Code: vendorhttp.CodeUnreachable, Uncertain: true,
				Message: c.clean("the SCIM server's Bulk answer could not be read: " + err.Error())}})
		}
		return
	}
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
		a := answer{status: int(r.Status), body: r.Response}
		if a.status >= 200 && a.status <= 299 {
			a.id = firstNonEmpty(idFromLocation(r.Location), idOf(r.Response))
		}
		set(w, a)
	}
	for _, w := range chunk {
		if !seen[w] {
			set(w, answer{})
		}
	}
}

func bulkRequest(chunk []*write) map[string]any {
	ops := make([]bulkOp, len(chunk))
	for k, w := range chunk {
		ops[k] = w.op()
	}
	return map[string]any{"schemas": []string{schemaBulkReq}, "Operations": ops}
}

func halves(chunk []*write) [][]*write {
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
