package usercom

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
)

// FuzzApplyAnswer answers every user.com call with a fuzzed body and status
// and checks that Apply still returns one well-formed Result per Change.
func FuzzApplyAnswer(f *testing.F) {
	for _, seed := range []struct {
		body   string
		status int
	}{
		{`{"created":true,"id":5577}`, 200},
		{`{"created":false,"id":"5578"}`, 200},
		{`{"id":null}`, 200},
		{`{"detail":"Attribute 'nickname' does not exist"}`, 400},
		{`{"email":["Enter a valid email address."]}`, 400},
		{`{"detail":"Not found."}`, 404},
		{`{"status":"ok"}`, 200},
		{`<html>`, 502},
		{``, 204},
	} {
		f.Add([]byte(seed.body), seed.status, uint8(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, status int, n uint8) {
		if status < 200 || status > 599 {
			status = 200 + (abs(status) % 400)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(body)
		}))
		defer srv.Close()
		cl, err := Factory{}.New(providers.Config{Endpoint: srv.URL + "/api/public/",
			Credentials: map[string][]byte{"token": []byte("fuzz-token-0123")},
			HTTPClient:  &http.Client{Timeout: 2 * time.Second},
			Sleep:       func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
		if err != nil {
			t.Fatal(err)
		}
		count := 1 + int(n%5)
		chs := make([]providers.Change, count)
		for i := range chs {
			op := []providers.Op{providers.OpCreate, providers.OpUpdate, providers.OpDelete}[i%3]
			chs[i] = providers.Change{ID: fmt.Sprint(i), Op: op, User: providers.User{Key: fmt.Sprintf("u%d", i),
				Email: fmt.Sprintf("u%d@example.com", i), Attributes: map[string]any{"plan": "pro", "seat": float64(i)}}}
			if op != providers.OpCreate {
				chs[i].ExternalID = fmt.Sprint(100 + i)
			}
		}
		res, err := cl.Apply(context.Background(), chs)
		if err != nil {
			var ae *providers.AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("Apply: %v", err)
			}
			if strings.Contains(err.Error(), "fuzz-token-0123") {
				t.Fatal("the token is in the error")
			}
			return
		}
		seen := map[string]bool{}
		for _, r := range res {
			if seen[r.ID] {
				t.Fatalf("two results for %s", r.ID)
			}
			seen[r.ID] = true
			if r.Err != nil {
				var re *providers.RecordError
				if !errors.As(r.Err, &re) || re.Code == "" {
					t.Fatalf("%s: %v is not a RecordError with a code", r.ID, r.Err)
				}
				if strings.Contains(re.Message, "fuzz-token-0123") {
					t.Fatal("the token is in a message")
				}
				continue
			}
			ch := chs[atoi(r.ID)]
			if ch.Op != providers.OpDelete && r.ExternalID == "" {
				t.Fatalf("%s: the %s succeeded without an id", r.ID, ch.Op)
			}
		}
		if len(seen) != len(chs) {
			t.Fatalf("%d results for %d changes", len(seen), len(chs))
		}
	})
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

func atoi(s string) int {
	n := 0
	for _, r := range s {
		n = n*10 + int(r-'0')
	}
	return n
}
