package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
	"github.com/usersync/usersync-operator/internal/providers/emulation/emulationtest"
	ucemu "github.com/usersync/usersync-operator/internal/providers/usercom/emulator"
)

const key = "emulator-test-key"

func customID(i int) string { return fmt.Sprintf("u%d", i) }

func upsert(t *testing.T, base string, i int) *http.Request {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"custom_id": customID(i), "email": customID(i) + "@example.com", "plan": "pro"})
	req, err := http.NewRequest(http.MethodPost, base+ucemu.EndpointUpsert, strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Token "+key)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// TestFaults: every fault of the harness reaches a user.com endpoint.
func TestFaults(t *testing.T) {
	em := ucemu.New(ucemu.Options{Tokens: []string{key}, Attributes: map[string]string{"plan": ucemu.TypeString}})
	base := em.Start()
	defer em.Close()
	if !strings.HasSuffix(base, ucemu.APIPath) || em.URL() != base {
		t.Fatalf("URL %q, Start %q", em.URL(), base)
	}
	emulationtest.Faults(t, emulationtest.Target{
		Inject:  func(f emulation.Fault) { em.Inject(ucemu.EndpointUpsert, f) },
		Request: func(t *testing.T, i int) *http.Request { return upsert(t, base, i) },
		Applied: func(i int) bool {
			_, ok := em.UserByCustomID(customID(i))
			return ok
		},
		Calls: func() int { return em.Calls(ucemu.EndpointUpsert) },
	})
}

// TestInjectedError is user.com's {"detail": ...}.
func TestInjectedError(t *testing.T) {
	em := ucemu.New(ucemu.Options{Tokens: []string{key}, Attributes: map[string]string{"plan": ucemu.TypeString}})
	base := em.Start()
	defer em.Close()
	em.Inject(ucemu.EndpointUpsert, ucemu.Fault{Status: http.StatusServiceUnavailable})
	resp, err := http.DefaultClient.Do(upsert(t, base, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusServiceUnavailable || body["detail"] != "Injected fault: Service Unavailable." {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	if got := em.Inputs(ucemu.EndpointUpsert); len(got) != 0 {
		t.Fatalf("inputs %v: update_or_create is not a batch", got)
	}
}

// TestReadEditDelete: GET users-by-id/{custom_id}/ answers the stored
// user, with the edits and deletions made behind the API's back.
func TestReadEditDelete(t *testing.T) {
	em := ucemu.New(ucemu.Options{Tokens: []string{key}, Attributes: map[string]string{"plan": ucemu.TypeString}})
	base := em.Start()
	defer em.Close()
	if resp, err := http.DefaultClient.Do(upsert(t, base, 1)); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("upsert: %v %v", resp, err)
	}
	get := func() (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, base+"users-by-id/"+customID(1)+"/", nil)
		req.Header.Set("Authorization", "Token "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	status, body := get()
	if status != http.StatusOK || body["custom_id"] != customID(1) || body["email"] != "u1@example.com" ||
		body["attributes"].(map[string]any)["plan"] != "pro" {
		t.Fatalf("%d %v", status, body)
	}
	if !em.EditUser(customID(1), map[string]any{"first_name": "Eve", "plan": nil, "city": "Delft", "seat": "3"}) {
		t.Fatal("EditUser")
	}
	status, body = get()
	attrs := body["attributes"].(map[string]any)
	if status != http.StatusOK || body["first_name"] != "Eve" || body["city"] != "Delft" || attrs["plan"] != nil || attrs["seat"] != "3" {
		t.Fatalf("after EditUser: %d %v", status, body)
	}
	if !em.DeleteUser(customID(1)) || em.EditUser(customID(1), nil) {
		t.Fatal("DeleteUser")
	}
	if status, body = get(); status != http.StatusNotFound || body["detail"] != "Not found." {
		t.Fatalf("after DeleteUser: %d %v", status, body)
	}
	if got := em.Calls(ucemu.EndpointRead); got != 3 || em.Calls(ucemu.EndpointDelete) != 0 {
		t.Fatalf("reads %d, deletes %d", got, em.Calls(ucemu.EndpointDelete))
	}
}
