package controller

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
)

var strconvItoa = strconv.Itoa

// fakeOr routes providers whose endpoint is on the .fake.invalid domain to
// the recording fakes and the others to a vendor package.
type fakeOr struct{ vendor providers.Factory }

func (f fakeOr) New(cfg providers.Config) (providers.Client, error) {
	if u, err := url.Parse(cfg.Endpoint); err == nil && strings.HasSuffix(u.Hostname(), ".fake.invalid") {
		return fakes.New(cfg)
	}
	return f.vendor.New(cfg)
}
func (f fakeOr) DefaultEndpoint() string                { return f.vendor.DefaultEndpoint() }
func (f fakeOr) MaxBatchSize() int                      { return f.vendor.MaxBatchSize() }
func (f fakeOr) DefaultRateLimit() (int, time.Duration) { return f.vendor.DefaultRateLimit() }

// fakeVendors is a providers.Factory whose clients write to in-memory
// vendors, one per endpoint, and record every Apply call. The token in the
// Secret must equal the vendor's token, or Apply answers an AuthError.
type fakeVendors struct {
	mu      sync.Mutex
	vendors map[string]*fakeVendor
}

func newFakeVendors() *fakeVendors { return &fakeVendors{vendors: map[string]*fakeVendor{}} }

// vendor returns (creating it) the fake behind an endpoint.
func (f *fakeVendors) vendor(endpoint, token string) *fakeVendor {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.vendors[endpoint]
	if v == nil {
		v = &fakeVendor{token: token, users: map[string]providers.User{}, ids: map[string]string{},
			reject: map[string]string{}}
		f.vendors[endpoint] = v
	}
	return v
}

func (f *fakeVendors) New(cfg providers.Config) (providers.Client, error) {
	return &fakeClient{v: f.vendor(cfg.Endpoint, ""), token: string(cfg.Credentials["token"])}, nil
}
func (f *fakeVendors) DefaultEndpoint() string { return "https://fake.invalid" }
func (f *fakeVendors) MaxBatchSize() int       { return 100 }
func (f *fakeVendors) DefaultRateLimit() (int, time.Duration) {
	return 1000, time.Second
}

// fakeCall is one recorded Apply.
type fakeCall struct {
	Creates, Updates, Deletes int
	Keys                      []string
}

type fakeVendor struct {
	mu     sync.Mutex
	token  string
	users  map[string]providers.User // by external id
	ids    map[string]string         // identity -> external id
	nextID int
	calls  []fakeCall
	// reject maps a user key to a permanent error message.
	reject map[string]string
	// down makes every change fail transiently.
	down bool
}

func (v *fakeVendor) snapshot() (calls []fakeCall, users int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]fakeCall(nil), v.calls...), len(v.users)
}

func (v *fakeVendor) set(fn func(v *fakeVendor)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fn(v)
}

type fakeClient struct {
	v     *fakeVendor
	token string
}

func (c *fakeClient) Identity(u providers.User) string {
	if u.Email != "" {
		return strings.ToLower(u.Email)
	}
	return u.Key
}

func (c *fakeClient) Verify(context.Context) error {
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	if c.token != c.v.token {
		return &providers.AuthError{StatusCode: 401, Reason: "Unauthorized", Message: "invalid token"}
	}
	return nil
}

func (c *fakeClient) Apply(_ context.Context, changes []providers.Change) ([]providers.Result, error) {
	v := c.v
	v.mu.Lock()
	defer v.mu.Unlock()
	if c.token != v.token {
		return nil, &providers.AuthError{StatusCode: 401, Reason: "Unauthorized", Message: "invalid token"}
	}
	call := fakeCall{}
	out := make([]providers.Result, 0, len(changes))
	for _, ch := range changes {
		call.Keys = append(call.Keys, ch.User.Key)
		res := providers.Result{ID: ch.ID}
		switch {
		case v.down:
			res.Err = &providers.RecordError{Code: "ServerError", Message: "vendor is down"}
		case v.reject[ch.User.Key] != "" && ch.Op != providers.OpDelete:
			res.Err = &providers.RecordError{Permanent: true, Code: "VALIDATION_ERROR", Message: v.reject[ch.User.Key]}
		case ch.Op == providers.OpDelete:
			call.Deletes++
			delete(v.users, ch.ExternalID)
			res.Action = providers.ActionDeleted
		default:
			id := ch.ExternalID
			if id == "" {
				id = v.ids[c.Identity(ch.User)]
			}
			if id == "" {
				call.Creates++
				v.nextID++
				id = strconv.Itoa(v.nextID)
				res.Action = providers.ActionCreated
			} else {
				call.Updates++
				res.Action = providers.ActionUpdated
			}
			v.users[id] = ch.User
			v.ids[c.Identity(ch.User)] = id
			res.ExternalID = id
		}
		out = append(out, res)
	}
	v.calls = append(v.calls, call)
	return out, nil
}
