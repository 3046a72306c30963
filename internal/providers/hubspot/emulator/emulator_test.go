package emulator_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
	"github.com/usersync/usersync-operator/internal/providers/emulation/emulationtest"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

const token = "pat-emulator-test"

var scopes = []string{"crm.objects.users.read", "crm.objects.users.write"}

func email(i int) string { return fmt.Sprintf("u%d@example.com", i) }

func create(t *testing.T, url string, emails ...string) *http.Request {
	t.Helper()
	var in []map[string]any
	for _, e := range emails {
		in = append(in, map[string]any{"properties": map[string]string{"hs_email": e}, "objectWriteTraceId": e})
	}
	b, _ := json.Marshal(map[string]any{"inputs": in})
	req, err := http.NewRequest(http.MethodPost, url+"/crm/v3/objects/users/batch/create", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// TestFaults: every fault of the harness reaches a HubSpot endpoint.
func TestFaults(t *testing.T) {
	em := hsemu.New(hsemu.Options{Tokens: map[string][]string{token: scopes}, RateLimit: -1})
	url := em.Start()
	defer em.Close()
	emulationtest.Faults(t, emulationtest.Target{
		Inject:  func(f emulation.Fault) { em.Inject(hsemu.EndpointCreate, f) },
		Request: func(t *testing.T, i int) *http.Request { return create(t, url, email(i)) },
		Applied: func(i int) bool {
			for _, u := range em.Users() {
				if u.Properties["hs_email"] == email(i) {
					return true
				}
			}
			return false
		},
		Calls: func() int { return em.Calls(hsemu.EndpointCreate) },
	})
}

// TestInjected429 is HubSpot's rate-limit body.
func TestInjected429(t *testing.T) {
	em := hsemu.New(hsemu.Options{Tokens: map[string][]string{token: scopes}, RateLimit: -1})
	url := em.Start()
	defer em.Close()
	em.Inject(hsemu.EndpointCreate, hsemu.Fault{Status: http.StatusTooManyRequests})
	resp, err := http.DefaultClient.Do(create(t, url, email(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if body["errorType"] != "RATE_LIMIT" || body["policyName"] != "SECONDLY" ||
		resp.Header.Get("Content-Type") != "application/json;charset=utf-8" {
		t.Fatalf("%s %v", resp.Header.Get("Content-Type"), body)
	}
}

// TestRateLimit: the rolling window answers HubSpot's 429 and headers,
// exempts search, and counts what it refused.
func TestRateLimit(t *testing.T) {
	em := hsemu.New(hsemu.Options{Tokens: map[string][]string{token: scopes}, RateLimit: 2, RateWindow: time.Minute})
	url := em.Start()
	defer em.Close()
	do := func(req *http.Request) (*http.Response, string) {
		t.Helper()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp, string(b)
	}
	for i := range 2 {
		resp, _ := do(create(t, url, email(i)))
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-HubSpot-RateLimit-Remaining") != fmt.Sprint(1-i) ||
			resp.Header.Get("X-HubSpot-RateLimit-Max") != "2" || resp.Header.Get("X-HubSpot-RateLimit-Interval-Milliseconds") != "60000" {
			t.Fatalf("call %d: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	resp, body := do(create(t, url, email(3)))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-HubSpot-RateLimit-Remaining") != "0" ||
		!strings.Contains(body, "TEN_SECONDLY_ROLLING") {
		t.Fatalf("third call: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	search, _ := http.NewRequest(http.MethodPost, url+"/crm/v3/objects/users/search", strings.NewReader(`{"filterGroups":[]}`))
	search.Header.Set("Authorization", "Bearer "+token)
	if resp, body := do(search); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"total":2`) {
		t.Fatalf("search: %d %s", resp.StatusCode, body)
	}
	if em.Throttled() != 1 || em.MaxInWindow() != 2 || em.Calls(hsemu.EndpointCreate) != 2 || em.Calls(hsemu.EndpointSearch) != 1 {
		t.Fatalf("throttled %d, max in window %d, creates %d, searches %d",
			em.Throttled(), em.MaxInWindow(), em.Calls(hsemu.EndpointCreate), em.Calls(hsemu.EndpointSearch))
	}
	em.ResetCounters()
	if em.Throttled() != 0 || em.MaxInWindow() != 0 || em.Calls(hsemu.EndpointCreate) != 0 || len(em.Users()) != 2 {
		t.Fatalf("after ResetCounters: throttled %d, max %d, creates %d, users %d",
			em.Throttled(), em.MaxInWindow(), em.Calls(hsemu.EndpointCreate), len(em.Users()))
	}
}
