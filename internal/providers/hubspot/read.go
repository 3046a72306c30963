package hubspot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

var _ providers.Reader = (*Client)(nil)

// ReadBatch implements providers.Reader: batch/read takes 100 inputs.
func (c *Client) ReadBatch() int { return c.batch }

// Read implements providers.Reader with batch/read, 100 users a call, from
// HubSpot's record store (current, unlike search): by the idProperty value
// when the provider has one, else by the record id, asking only for the
// properties the operator writes. A user HubSpot names in the answer's
// OBJECT_NOT_FOUND error is Missing; a user the answer does not mention,
// and every user of a call that failed, is Unknown.
func (c *Client) Read(ctx context.Context, reqs []providers.ReadRequest) ([]providers.Observation, error) {
	if len(reqs) <= c.batch {
		return c.readPart(ctx, reqs)
	}
	out := make([]providers.Observation, 0, len(reqs))
	for start := 0; start < len(reqs); start += c.batch {
		part := reqs[start:min(start+c.batch, len(reqs))]
		obs, err := c.readPart(ctx, part)
		if err != nil {
			return nil, err
		}
		out = append(out, obs...)
	}
	return out, nil
}

// readKey is the value a request is read by.
func (c *Client) readKey(r providers.ReadRequest) string {
	if c.idProperty != "" {
		return c.idValue(r.User)
	}
	return r.ExternalID
}

// A pass over 100,000 users reads 100,000 objects: the read path allocates
// next to nothing per user (docs/benchmarks.md, verification). Each user's
// properties are listed once (wantedProps, what properties gives Apply,
// without a map), and an answer is decoded only as far as the comparison
// needs: the objects' properties are left as the raw JSON of the answer and
// only the requested ones are looked at (readAnswer, eachMember).

// wanted is a property the operator writes, with the value it writes;
// slot is the property's place in the call's requested properties.
type wanted struct {
	name, value string
	slot        int
}

// wantedProps appends to dst the properties the operator writes for u, as
// properties maps them: the attributes, then the email (when set), the
// names and the idProperty value (when set), each replacing an attribute
// of the same name.
func (c *Client) wantedProps(dst []wanted, u providers.User) []wanted {
	start := len(dst)
	set := func(name, value string) {
		for i := start; i < len(dst); i++ {
			if dst[i].name == name {
				dst[i].value = value
				return
			}
		}
		dst = append(dst, wanted{name: name, value: value})
	}
	if u.Email != "" {
		set(PropEmail, u.Email)
	}
	set(PropFirstName, u.FirstName)
	set(PropLastName, u.LastName)
	if c.idProperty != "" {
		if v := c.idValue(u); v != "" {
			set(c.idProperty, v)
		}
	}
	fixed := len(dst)
	for k, v := range u.Attributes {
		taken := false
		for i := start; i < fixed; i++ {
			taken = taken || dst[i].name == k
		}
		if !taken {
			dst = append(dst, wanted{name: k, value: providers.Scalar(v)})
		}
	}
	return dst
}

// readScratch is what one read call needs and nothing keeps after it:
// pooled, so that a pass of 1,000 calls reuses it.
type readScratch struct {
	// first[k] is the first request read by key k, next[i] the next one
	// after i (-1: none): a key is asked for once.
	first map[string]int
	next  []int
	// want[from[i]:from[i+1]] are request i's properties.
	want   []wanted
	from   []int
	names  []string
	inputs []input
	// stored[s] is the value HubSpot holds for names[s] in the object at
	// hand (absent: nil, read as "").
	stored []storedValue
}

var readScratchPool = sync.Pool{New: func() any { return &readScratch{first: map[string]int{}} }}

func (sc *readScratch) release() {
	clear(sc.first)
	clear(sc.want) // no user data kept alive by the pool
	clear(sc.names)
	clear(sc.inputs)
	clear(sc.stored)
	readScratchPool.Put(sc)
}

func (c *Client) readPart(ctx context.Context, part []providers.ReadRequest) ([]providers.Observation, error) {
	obs := make([]providers.Observation, len(part))
	sc := readScratchPool.Get().(*readScratch)
	defer sc.release()
	sc.next = slices.Grow(sc.next[:0], len(part))[:len(part)]
	sc.from = slices.Grow(sc.from[:0], len(part)+1)[:len(part)+1]
	want, names, inputs := sc.want[:0], sc.names[:0], sc.inputs[:0]
	for i, r := range part {
		obs[i] = providers.Observation{ID: r.ID}
		sc.next[i] = -1
		sc.from[i] = len(want)
		k := c.readKey(r)
		if k == "" {
			obs[i].Err = fmt.Errorf("the user has no HubSpot id to read it by")
			sc.from[i+1] = len(want)
			continue
		}
		if j, ok := sc.first[k]; ok {
			for sc.next[j] >= 0 {
				j = sc.next[j]
			}
			sc.next[j] = i
		} else {
			sc.first[k] = i
			inputs = append(inputs, input{ID: k})
		}
		want = c.wantedProps(want, r.User)
		sc.from[i+1] = len(want)
		for _, w := range want[sc.from[i]:] {
			if !slices.Contains(names, w.name) {
				names = append(names, w.name)
			}
		}
	}
	sc.want, sc.names, sc.inputs = want, names, inputs
	if len(inputs) == 0 {
		return obs, nil
	}
	slices.Sort(names)
	for i := range want {
		want[i].slot, _ = slices.BinarySearch(names, want[i].name)
	}
	unknown := func(err error) []providers.Observation {
		for i := range obs {
			if obs[i].Err == nil {
				obs[i].Err = err
			}
		}
		return obs
	}
	idSlot := -1
	if c.idProperty != "" {
		// Every request read by its idProperty value asks for it.
		s, ok := slices.BinarySearch(names, c.idProperty)
		if !ok {
			return unknown(fmt.Errorf("the idProperty %s was not asked for", c.idProperty)), nil
		}
		idSlot = s
	}
	// The request is encoded before Do returns: the scratch may go back
	// to the pool after it.
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodPost, Path: pathRead + "?archived=false",
		Body:       batchRequest{Inputs: inputs, IDProperty: c.idProperty, Properties: names},
		Idempotent: true, Endpoint: "batch/read", Records: len(inputs)})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return unknown(err), nil
	}
	if resp.Status != http.StatusOK && resp.Status != http.StatusMultiStatus {
		e := errorOf(resp.Status, resp.Body)
		return unknown(fmt.Errorf("HubSpot answered HTTP %d to a read: %s", resp.Status, e.text())), nil
	}
	sc.stored = slices.Grow(sc.stored[:0], len(names))[:len(names)]
	found := func(id []byte, archived bool) {
		var k []byte
		if idSlot >= 0 {
			k = sc.stored[idSlot].text
		} else {
			k, _ = textOf(id, false)
		}
		if archived || len(k) == 0 {
			return
		}
		i, ok := sc.first[string(k)]
		for ; ok && i >= 0; i = sc.next[i] {
			obs[i].Presence = providers.Found
			obs[i].Differs = differs(want[sc.from[i]:sc.from[i+1]], sc.stored)
		}
	}
	errs, ok := readAnswer(resp.Body, names, sc.stored, found)
	if !ok {
		return unknown(fmt.Errorf("HubSpot's read answer could not be read")), nil
	}
	for _, e := range errs {
		if !notFound(&e) {
			continue
		}
		for _, k := range e.contextValues("ids") {
			i, ok := sc.first[k]
			for ; ok && i >= 0; i = sc.next[i] {
				if obs[i].Presence == providers.Unknown {
					obs[i].Presence = providers.Missing
				}
			}
		}
	}
	for i := range obs {
		if obs[i].Presence == providers.Unknown && obs[i].Err == nil {
			obs[i].Err = fmt.Errorf("HubSpot's read answer did not mention the user")
		}
	}
	return obs, nil
}

// differs names the properties the operator writes whose stored value is
// not the declared one, sorted.
func differs(want []wanted, stored []storedValue) []string {
	var out []string
	for _, w := range want {
		got := stored[w.slot]
		// The common case first, without a string made of the stored bytes.
		if !got.bad && w.value == string(got.text) {
			continue
		}
		if got.bad || !sameValue(w.name, w.value, string(got.text)) {
			out = append(out, w.name)
		}
	}
	slices.Sort(out)
	return out
}

// slotOf finds a property's name, as the raw JSON string of an answer, among
// the requested names.
func slotOf(names []string, raw []byte) (int, bool) {
	name, ok := textOf(raw, false)
	if !ok {
		return 0, false
	}
	for s := range names {
		if names[s] == string(name) {
			return s, true
		}
	}
	return 0, false
}

// sameValue compares a declared property value with the stored one as
// HubSpot keeps them: every value is a string; emails compare without case;
// numbers by value ("3" and "3.0"); booleans without case; an empty value
// and an absent property are the same (HubSpot clears a property set to "").
func sameValue(prop, want, got string) bool {
	if want == got {
		return true
	}
	if prop == PropEmail {
		return strings.EqualFold(want, got)
	}
	if a, err := strconv.ParseFloat(want, 64); err == nil {
		if b, err := strconv.ParseFloat(got, 64); err == nil {
			return a == b
		}
	}
	if a, err := strconv.ParseBool(want); err == nil {
		if b, err := strconv.ParseBool(got); err == nil {
			return a == b
		}
	}
	return false
}

// readAnswer reads a batch/read answer (HubSpot's BatchResponse): for
// each object of results, it fills stored with the values of the requested
// properties names and calls found with the object's raw id and whether it
// is archived; it returns the errors. ok is false when body is not such an
// answer, as encoding/json decoding it into the wire types would say,
// except that an object's id that is no scalar only leaves that object
// unmatched. Names of the answer's fields match without case, as
// encoding/json matches them.
//
// A pass reads 100,000 objects: encoding/json would decode every property
// of each into a map (a third of a pass's CPU, with the collector's share);
// this checks the answer is JSON once and then only finds where each value
// ends, decoding the requested properties alone, without copies.
func readAnswer(body []byte, names []string, stored []storedValue, found func(id []byte, archived bool)) ([]errorBody, bool) {
	if !json.Valid(body) {
		return nil, false
	}
	var errs []errorBody
	ok := rawJSON(body).eachMember(func(name, value []byte) bool {
		switch {
		case fieldIs(name, "results"):
			return rawJSON(value).eachElement(func(obj []byte) bool {
				clear(stored)
				var id []byte
				archived := false
				return rawJSON(obj).eachMember(func(name, value []byte) bool {
					switch {
					case fieldIs(name, "id"):
						id = value
					case fieldIs(name, "archived"):
						switch string(value) {
						case "true", "false", "null":
							archived = string(value) == "true"
						default:
							return false
						}
					case fieldIs(name, "properties"):
						return rawJSON(value).eachMember(func(name, value []byte) bool {
							if s, ok := slotOf(names, name); ok {
								stored[s] = storedOf(value)
							}
							return true
						})
					}
					return true
				}) && foundOne(found, id, archived)
			})
		case fieldIs(name, "errors"):
			errs = nil
			return json.Unmarshal(value, &errs) == nil
		}
		return true
	})
	return errs, ok
}

func foundOne(found func(id []byte, archived bool), id []byte, archived bool) bool {
	found(id, archived)
	return true
}

// fieldIs reports whether a raw JSON member name is field, without case.
func fieldIs(raw []byte, field string) bool {
	name, ok := textOf(raw, false)
	return ok && len(name) == len(field) && bytes.EqualFold(name, []byte(field))
}

// rawJSON is a JSON value of a document that encoding/json has checked is
// valid, read in place.
type rawJSON []byte

// eachMember calls f with the raw name (a JSON string) and value of each
// member of the JSON object r, in order, until f returns false; null holds
// no members. It reports false when f did, or r is not an object.
func (r rawJSON) eachMember(f func(name, value []byte) bool) bool {
	b := []byte(r)
	i := skipSpace(b, 0)
	if string(b[i:]) == "null" {
		return true
	}
	if i == len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return true
	}
	for i < len(b) {
		end := valueEnd(b, i)
		if end < 0 || b[i] != '"' {
			return false
		}
		name := b[i:end]
		i = skipSpace(b, end)
		if i == len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if end = valueEnd(b, i); end < 0 || !f(name, b[i:end]) {
			return false
		}
		i = skipSpace(b, end)
		if i == len(b) {
			return false
		}
		switch b[i] {
		case '}':
			return true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return false
		}
	}
	return false
}

// eachElement calls f with each raw element of the JSON array r, in order,
// until f returns false; null holds no elements. It reports false when f
// did, or r is not an array.
func (r rawJSON) eachElement(f func(value []byte) bool) bool {
	b := []byte(r)
	i := skipSpace(b, 0)
	if string(b[i:]) == "null" {
		return true
	}
	if i == len(b) || b[i] != '[' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return true
	}
	for i < len(b) {
		end := valueEnd(b, i)
		if end < 0 || !f(b[i:end]) {
			return false
		}
		i = skipSpace(b, end)
		if i == len(b) {
			return false
		}
		switch b[i] {
		case ']':
			return true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return false
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns where the JSON value that starts at b[i] ends, or -1.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		// Most strings hold no escape: find the closing quote at once.
		if j := bytes.IndexByte(b[i+1:], '"'); j >= 0 && bytes.IndexByte(b[i+1:i+1+j], '\\') < 0 {
			return i + 2 + j
		}
		for i++; i < len(b); i++ {
			switch b[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return -1
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end := valueEnd(b, i)
				if end < 0 {
					return -1
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	default:
		start := i
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		if i == start {
			return -1
		}
		return i
	}
}

// storedValue is a property's value as text; the zero value is an absent
// property, read as "". bad marks a value that is no scalar (an object or
// a list), which equals no declared value.
type storedValue struct {
	text []byte
	bad  bool
}

// storedOf renders a raw property value as text, as object.prop does: a
// string as it is, null as "", a number as providers.Scalar renders a
// float64, a boolean as true or false.
func storedOf(raw []byte) storedValue {
	t, ok := textOf(raw, true)
	return storedValue{text: t, bad: !ok}
}

// textOf renders a raw JSON scalar as text: a string unquoted (a slice of
// raw unless it holds escapes), null as empty, true and false as they are,
// a number as it is, or with asFloat as providers.Scalar renders the
// float64 it holds. ok is false for objects, lists and what is not JSON.
func textOf(raw []byte, asFloat bool) ([]byte, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	switch c := raw[0]; {
	case c == '"':
		if len(raw) < 2 || raw[len(raw)-1] != '"' {
			return nil, false
		}
		// encoding/json replaces invalid UTF-8 with U+FFFD.
		if s := raw[1 : len(raw)-1]; !slices.Contains(s, '\\') && utf8.Valid(s) {
			return s, true
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return []byte(s), true
	case string(raw) == "null":
		return nil, true
	case string(raw) == "true", string(raw) == "false":
		return raw, true
	case c == '-' || (c >= '0' && c <= '9'):
		if !asFloat {
			return raw, true
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return nil, false
		}
		return strconv.AppendFloat(nil, f, 'f', -1, 64), true
	}
	return nil, false
}

var _ providers.OrphanCounter = (*Client)(nil)

// CountOrphans implements providers.OrphanCounter: with an idProperty it
// pages through the users (GET, 100 a page, only that property) and counts
// those that carry a value no UserSync declares. Without one HubSpot users
// carry nothing of this provider's: ok is false.
func (c *Client) CountOrphans(ctx context.Context, declared map[string]bool) (int, bool, error) {
	if c.idProperty == "" {
		return 0, false, nil
	}
	n, after := 0, ""
	for {
		path := "?limit=100&archived=false&properties=" + url.QueryEscape(c.idProperty)
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: path, Idempotent: true, Endpoint: "list"})
		if err != nil {
			return 0, false, err
		}
		if resp.Status != http.StatusOK {
			e := errorOf(resp.Status, resp.Body)
			return 0, false, fmt.Errorf("HubSpot answered HTTP %d to a list of users: %s", resp.Status, e.text())
		}
		var page searchResponse
		if err := json.Unmarshal(resp.Body, &page); err != nil {
			return 0, false, fmt.Errorf("HubSpot's list of users could not be read")
		}
		for _, o := range page.Results {
			v := o.prop(c.idProperty)
			if c.idFrom == IDFromEmail {
				v = strings.ToLower(v)
			}
			if v != "" && !declared[v] {
				n++
			}
		}
		if page.Paging == nil || page.Paging.Next == nil || page.Paging.Next.After == "" || string(page.Paging.Next.After) == after {
			return n, true, nil
		}
		after = string(page.Paging.Next.After)
	}
}

var _ providers.CallPlanner = (*Client)(nil)

// PlanCalls implements providers.CallPlanner with the packing of Apply:
// with an idProperty, every create and update is one upsert batch; without
// one, updates by id, and creates preceded by a lookup batch (adoption, or
// a retry) — a user the lookup finds is updated instead of created, in as
// many calls. Deletions are archive batches.
func (c *Client) PlanCalls(chs []providers.Change) int {
	batches := func(n int) int { return (n + c.batch - 1) / c.batch }
	var writes, updates, creates, lookups, deletes int
	for _, ch := range chs {
		switch {
		case ch.Op == providers.OpDelete:
			deletes++
		case c.idProperty != "":
			writes++
		case ch.ExternalID != "":
			updates++
		default:
			creates++
			if ch.Retry || c.adopt {
				lookups++
			}
		}
	}
	return batches(writes) + batches(updates) + batches(creates) + batches(lookups) + batches(deletes)
}
