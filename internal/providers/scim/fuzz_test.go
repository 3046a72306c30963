package scim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/usersync/usersync-operator/internal/providers"
)

// Fuzz targets of the SCIM client: how it reads answers it cannot trust.
//
//	go test -run '^$' -fuzz '^FuzzDecodeBulkResponse$' -fuzztime 45s ./internal/providers/scim
//	go test -run '^$' -fuzz '^FuzzDecodeListResponse$' -fuzztime 45s ./internal/providers/scim

// FuzzDecodeBulkResponse feeds arbitrary BulkResponse bodies to the code
// that matches them to a request of four operations (w0..w3). Whatever the
// body: no panic; every operation gets exactly one answer; an answer is
// the one of the first operation the body reports with its bulkId (never
// another's, whatever the order), or, when the body reports none, "not
// processed" and sent again; 429 and 5xx are sent again; an unreadable body
// leaves every operation with an error and nothing is sent again.
func FuzzDecodeBulkResponse(f *testing.F) {
	f.Add([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkResponse"],"Operations":[` +
		`{"method":"POST","bulkId":"w0","location":"https://x/Users/92b7","status":"201"},` +
		`{"method":"POST","bulkId":"w1","status":"409","response":{"scimType":"uniqueness","detail":"taken","status":"409"}}]}`))
	f.Add([]byte(`{"Operations":[{"bulkId":"w3","status":200,"location":"/Users/a"},{"bulkId":"w2","status":503},{"bulkId":"w2","status":201}]}`))
	f.Add([]byte(`{"operations":null}`))
	f.Add([]byte(`{"OPERATIONS":[{"BULKID":"w1","Status":" 429 "}]}`))
	f.Add([]byte(`{"Operations":[{"bulkId":"w9","status":"201"},{"bulkId":"w0","status":"abc"}]}`))
	f.Add([]byte(`<html>502</html>`))
	f.Add([]byte(`{"Operations":[{"bulkId":"w0","status":"204","response":{"id":"7"}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		cl, err := Factory{}.New(providers.Config{Endpoint: "https://scim.example.com/v2", Credentials: map[string][]byte{"token": []byte(testToken)}})
		if err != nil {
			t.Fatal(err)
		}
		c := cl.(*Client)
		chunk := make([]*write, 4)
		for i := range chunk {
			chunk[i] = &write{i: i, kind: kind(i % 3)}
		}
		got := map[*write][]answer{}
		again := c.settleBulk(chunk, body, func(w *write, a answer) { got[w] = append(got[w], a) })
		br, err := decodeBulk(body)
		if err != nil {
			if len(again) != 0 {
				t.Fatalf("an unreadable answer sends %d operations again", len(again))
			}
			for _, w := range chunk {
				if len(got[w]) != 1 || got[w][0].err == nil {
					t.Fatalf("%s: %+v, want one error", bulkID(w), got[w])
				}
			}
			return
		}
		resend := map[*write]bool{}
		for _, w := range again {
			if resend[w] {
				t.Fatalf("%s sent again twice", bulkID(w))
			}
			resend[w] = true
		}
		for _, w := range chunk {
			if len(got[w]) != 1 {
				t.Fatalf("%s: %d answers", bulkID(w), len(got[w]))
			}
			a := got[w][0]
			var first *bulkResult
			for k := range br.Operations {
				if br.Operations[k].BulkID == bulkID(w) {
					first = &br.Operations[k]
					break
				}
			}
			if first == nil {
				if a.status != 0 || a.err != nil || !resend[w] {
					t.Fatalf("%s is not in the answer: %+v (sent again %v)", bulkID(w), a, resend[w])
				}
				continue
			}
			if a.status != int(first.Status) || string(a.body) != string(first.Response) {
				t.Fatalf("%s: %+v, want the answer of its own operation %+v", bulkID(w), a, *first)
			}
			if want := a.status <= 0 || a.status == http.StatusTooManyRequests || a.status >= 500; resend[w] != want {
				t.Fatalf("%s with status %d: sent again %v", bulkID(w), a.status, resend[w])
			}
			if a.status >= 200 && a.status <= 299 && a.id != firstNonEmpty(idFromLocation(first.Location), idOf(first.Response)) {
				t.Fatalf("%s: id %q", bulkID(w), a.id)
			}
		}
	})
}

// FuzzDecodeListResponse feeds arbitrary ListResponse bodies to the
// decoder the lookups use. Whatever the body: no panic, the same answer
// twice (no dependence on map order), and, for a JSON object, the decoded
// Resources are those of its Resources member matched without case (the
// RFC spelling first), missing or null read as none.
func FuzzDecodeListResponse(f *testing.F) {
	f.Add([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":1,"Resources":[{"id":"1","userName":"a"}]}`))
	f.Add([]byte(`{"totalResults":0}`))
	f.Add([]byte(`{"totalResults":"2","resources":null}`))
	f.Add([]byte(`{"TotalResults":1,"RESOURCES":[{"ID":"x"}],"resources":[]}`))
	f.Add([]byte(`{"totalResults":1.5}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := decodeList(body)
		l2, err2 := decodeList(body)
		if fmt.Sprint(err) != fmt.Sprint(err2) || !reflect.DeepEqual(l, l2) {
			t.Fatalf("two decodings differ: %+v %v / %+v %v", l, err, l2, err2)
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) != nil {
			if err == nil {
				t.Fatalf("%q is not an object, yet decoded as %+v", body, l)
			}
			return
		}
		if err != nil {
			return // a member of the wrong type
		}
		raw, ok := obj["Resources"]
		if k := firstKey(obj, "resources"); !ok && k != "" {
			raw, ok = obj[k], true
		}
		var want []json.RawMessage
		if ok {
			if e := json.Unmarshal(raw, &want); e != nil {
				t.Fatalf("resources %s decoded although invalid: %v", raw, e)
			}
		}
		if len(want) != len(l.Resources) {
			t.Fatalf("%d resources, want %d", len(l.Resources), len(want))
		}
		for k := range want {
			if string(want[k]) != string(l.Resources[k]) {
				t.Fatalf("resource %d: %s, want %s", k, l.Resources[k], want[k])
			}
			storedOf(l.Resources[k], "") // never panics
		}
	})
}

// firstKey is the first key of m, in sorted order, equal to name without
// case.
func firstKey(m map[string]json.RawMessage, name string) string {
	first := ""
	for k := range m {
		if strings.EqualFold(k, name) && (first == "" || k < first) {
			first = k
		}
	}
	return first
}
