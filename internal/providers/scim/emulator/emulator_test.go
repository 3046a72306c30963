package emulator

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
	"github.com/usersync/usersync-operator/internal/providers/emulation/emulationtest"
)

func TestFaults(t *testing.T) {
	e := New(Options{Tokens: []string{"t"}})
	// emulationtest checks for application/json; SCIM answers
	// application/scim+json (RFC 7644 §3.1), the same JSON.
	e.ContentType = "application/json"
	url := e.Start()
	t.Cleanup(e.Close)
	emulationtest.Faults(t, emulationtest.Target{
		Inject: func(f emulation.Fault) { e.Inject(EndpointCreate, f) },
		Request: func(t *testing.T, i int) *http.Request {
			body := fmt.Sprintf(`{"schemas":[%q],"userName":"user%d","externalId":"k%d"}`, SchemaUser, i, i)
			r, err := http.NewRequest(http.MethodPost, url+"/Users", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Authorization", "Bearer t")
			return r
		},
		Applied: func(i int) bool { _, ok := e.UserByExternalID(fmt.Sprint("k", i)); return ok },
		Calls:   func() int { return e.Calls(EndpointCreate) },
	})
}

func TestUnauthorizedAndTooLarge(t *testing.T) {
	p := Full
	p.MaxOperations = 2
	e := New(Options{Profile: p, Tokens: []string{"t"}})
	url := e.Start()
	t.Cleanup(e.Close)
	call := func(tok, body string) (int, string) {
		r, _ := http.NewRequest(http.MethodPost, url+"/Bulk", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if s, b := call("wrong", "{}"); s != 401 || !strings.Contains(b, `"status":"401"`) || !strings.Contains(b, SchemaError) {
		t.Fatalf("401: %d %s", s, b)
	}
	op := `{"method":"POST","path":"/Users","bulkId":"b%d","data":{"userName":"u%d"}}`
	three := fmt.Sprintf(`{"Operations":[`+op+`,`+op+`,`+op+`]}`, 1, 1, 2, 2, 3, 3)
	if s, b := call("t", three); s != 413 || !strings.Contains(b, "maxOperations") {
		t.Fatalf("413: %d %s", s, b)
	}
	two := fmt.Sprintf(`{"Operations":[`+op+`,`+op+`]}`, 1, 1, 2, 1)
	s, b := call("t", two)
	if s != 200 || !strings.Contains(b, `"status":"201"`) || !strings.Contains(b, `"scimType":"uniqueness"`) || !strings.Contains(b, `"bulkId":"b2"`) {
		t.Fatalf("bulk: %d %s", s, b)
	}
}
