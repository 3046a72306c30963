package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
	"github.com/usersync/usersync-operator/internal/providers/emulation/emulationtest"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
)

const (
	clientID = "client"
	secret   = "secret"
	source   = "emulator-test"
)

func sourceID(i int) string { return fmt.Sprintf("u%d", i) }

// token gets an access token from the emulator.
func token(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.PostForm(base+"/v2"+propemu.PathToken, url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return body.AccessToken
}

// TestFaults: every fault of the harness reaches a Propel endpoint.
func TestFaults(t *testing.T) {
	em := propemu.New(propemu.Options{Clients: map[string]string{clientID: secret}})
	base := em.Start()
	defer em.Close()
	tok := token(t, base)
	emulationtest.Faults(t, emulationtest.Target{
		Inject: func(f emulation.Fault) { em.Inject(propemu.PathBulkSource, f) },
		Request: func(t *testing.T, i int) *http.Request {
			b, _ := json.Marshal(map[string]any{"users": []map[string]any{{"source": source, "sourceId": sourceID(i)}}})
			req, err := http.NewRequest(http.MethodPost, base+"/v2"+propemu.PathBulkSource, strings.NewReader(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			return req
		},
		Applied: func(i int) bool {
			_, ok := em.UserBySourceID(source, sourceID(i))
			return ok
		},
		Calls: func() int { return em.Calls(propemu.PathBulkSource) },
	})
}

// TestInjectedError is Propel's error object, on the token endpoint too.
func TestInjectedError(t *testing.T) {
	em := propemu.New(propemu.Options{Clients: map[string]string{clientID: secret}})
	base := em.Start()
	defer em.Close()
	em.Inject(propemu.PathToken, propemu.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"})
	resp, err := http.PostForm(base+propemu.PathToken, url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Error struct {
			Code string `json:"code"`
			Type string `json:"type"`
		} `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" ||
		body.Error.Code != "429" || body.Error.Type != "TooManyRequests" {
		t.Fatalf("%d %v %+v", resp.StatusCode, resp.Header, body)
	}
	if got := em.Calls(propemu.PathToken); got != 1 {
		t.Fatalf("token calls %d", got)
	}
}

// TestLookupEditDelete: the lookup answers the stored user, with the
// edits and deletions made behind the API's back, and 403 while the
// account refuses reads.
func TestLookupEditDelete(t *testing.T) {
	em := propemu.New(propemu.Options{Clients: map[string]string{clientID: secret}})
	base := em.Start()
	defer em.Close()
	tok := token(t, base)
	do := func(method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, base+"/v2"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if status, _ := do(http.MethodPost, propemu.PathBulkSource, `{"users":[{"source":"`+source+`","sourceId":"u1","firstName":"A",`+
		`"attributes":[{"name":"plan","value":"pro","type":"text"},{"name":"seats","value":"3","type":"integer"}]}]}`); status != http.StatusOK {
		t.Fatalf("bulk: %d", status)
	}
	lookup := "/users/sourceId/u1?source=" + source
	if !em.EditUser(source, "u1", map[string]any{"firstName": "B", "phone": "123"}) ||
		!em.EditAttributes(source, "u1", map[string]any{"plan": nil, "seats": 4, "extra": "x"}) {
		t.Fatal("edit")
	}
	status, body := do(http.MethodGet, lookup, "")
	data, _ := body["data"].(map[string]any)
	if status != http.StatusOK || data["firstName"] != "B" || data["phone"] != "123" ||
		fmt.Sprint(data["attributes"]) != "[map[name:seats type:integer value:4] map[name:extra type:text value:x]]" {
		t.Fatalf("%d %v", status, body)
	}
	em.SetRefuseReads(true)
	if status, body := do(http.MethodGet, lookup, ""); status != http.StatusForbidden ||
		body["error"].(map[string]any)["code"] != "10003" {
		t.Fatalf("refused: %d %v", status, body)
	}
	em.SetRefuseReads(false)
	if !em.DeleteUser(source, "u1") || em.DeleteUser(source, "u1") || em.EditUser(source, "u1", nil) {
		t.Fatal("DeleteUser")
	}
	if status, body := do(http.MethodGet, lookup, ""); status != http.StatusNotFound ||
		body["error"].(map[string]any)["code"] != "10008" {
		t.Fatalf("deleted: %d %v", status, body)
	}
	if n := em.Lookups(); n != 3 {
		t.Fatalf("Lookups %d", n)
	}
}
