package emulator

import (
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"testing"
	"time"

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

func TestEveryProfile(t *testing.T) {
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			e := New(Options{Profile: p, Tokens: []string{"t"}, RateLimit: 3, RateWindow: time.Minute})
			url := e.Start()
			t.Cleanup(e.Close)
			call := func(tok, method, path, body string) (int, http.Header, string) {
				r, _ := http.NewRequest(method, url+path, strings.NewReader(body))
				r.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(r)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = resp.Body.Close() }()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, resp.Header, string(b)
			}
			if s, _, b := call("wrong", "GET", "/Users", ""); s != 401 || !strings.Contains(b, SchemaError) || !strings.Contains(b, `"status":"401"`) {
				t.Fatalf("401: %d %s", s, b)
			}
			if s, _, b := call("t", "POST", "/Users", `{"userName":"Ann@example.com"}`); s != 201 {
				t.Fatalf("create: %d %s", s, b)
			}
			if s, _, b := call("t", "POST", "/Users", `{"userName":"ann@EXAMPLE.com"}`); s != 409 || !strings.Contains(b, `"scimType":"uniqueness"`) {
				t.Fatalf("409: %d %s", s, b)
			}
			filter := "/Users?filter=" + neturl.QueryEscape(`userName eq "ann@example.com"`)
			if s, _, b := call("t", "GET", filter, ""); s != 200 || !strings.Contains(b, `"totalResults":1`) {
				t.Fatalf("lookup: %d %s", s, b)
			}
			s, h, b := call("t", "GET", "/Users", "")
			if s != 429 || h.Get("Retry-After") != "60" || !strings.Contains(b, SchemaError) || e.Throttled() != 1 {
				t.Fatalf("429: %d %v %s", s, h, b)
			}
		})
	}
}

func TestFilters(t *testing.T) {
	cases := map[string]map[string]int{
		"full": {`userName eq "a@x.io" and externalId eq "k1"`: 200, `title eq "Boss"`: 200, `active eq true`: 200,
			`userName co "a"`: 400, `userName eq "a" or userName eq "b"`: 400},
		"nobulk": {`externalId eq "k1"`: 200, `userName eq "a@x.io" and externalId eq "k1"`: 400, `title eq "Boss"`: 400},
		"aws":    {`userName eq "a@x.io" and externalId eq "k1"`: 200, `name.givenName eq "A"`: 200, `userName sw "a"`: 400},
	}
	for name, filters := range cases {
		p, _ := ProfileByName(name)
		e := New(Options{Profile: p, Tokens: []string{"t"}})
		url := e.Start()
		t.Cleanup(e.Close)
		if _, err := e.AddUser(map[string]any{"userName": "a@x.io", "externalId": "k1", "title": "Boss", "name": map[string]any{"givenName": "A"}}); err != nil {
			t.Fatal(err)
		}
		for f, want := range filters {
			r, _ := http.NewRequest("GET", url+"/Users?filter="+neturl.QueryEscape(f), nil)
			r.Header.Set("Authorization", "Bearer t")
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != want || (want == 200 && !strings.Contains(string(b), `"totalResults":1`)) ||
				(want == 400 && !strings.Contains(string(b), "invalidFilter")) {
				t.Errorf("%s: %s: %d %s", name, f, resp.StatusCode, b)
			}
		}
	}
}

func TestAWSSingleEmail(t *testing.T) {
	e := New(Options{Profile: AWS, Tokens: []string{"t"}})
	if _, err := e.AddUser(map[string]any{"userName": "a", "emails": []any{map[string]any{"value": "a@x.io"}, map[string]any{"value": "b@x.io"}}}); err == nil {
		t.Fatal("two emails accepted")
	}
	if _, err := e.AddUser(map[string]any{"userName": "a", "emails": []any{map[string]any{"value": "a@x.io"}}}); err != nil {
		t.Fatal(err)
	}
}
