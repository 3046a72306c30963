package propel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

const (
	// defaultTokenLifetime is the lifetime Propel documents for its tokens,
	// assumed when an answer carries no usable expires_in.
	defaultTokenLifetime = 30 * time.Minute
	// refreshMargin is how long before its expiry a token is replaced; a
	// tenth of the lifetime when that is shorter.
	refreshMargin = time.Minute
	// maxTokenBody bounds what is read of a token endpoint answer.
	maxTokenBody = 64 << 10
	// tokenVendor names the token endpoint in messages.
	tokenVendor = "Propel token endpoint"
)

// tokenSource fetches and caches access tokens of the client-credentials
// grant, and is the vendorhttp.Credentials of the API calls. It is safe for
// concurrent use; concurrent callers that find no valid token wait for a
// single fetch.
type tokenSource struct {
	url      string
	clientID string
	secret   string
	// endpoint sends the token requests: a token request is idempotent, so
	// a 5xx or lost answer is resent, up to five sends as the API calls
	// were when they fetched their token themselves. once sends a single
	// request, for Verify.
	endpoint, once *vendorhttp.Client

	// fetching holds a value while a token is being fetched.
	fetching chan struct{}

	mu        sync.Mutex
	token     string
	refreshAt time.Time
}

var _ vendorhttp.Credentials = (*tokenSource)(nil)

func newTokenSource(tokenURL, clientID, secret string, hc *http.Client, sleep func(context.Context, time.Duration) error) *tokenSource {
	t := &tokenSource{
		url:      tokenURL,
		clientID: clientID,
		secret:   secret,
		fetching: make(chan struct{}, 1),
	}
	p := policy
	p.MaxServerAttempts = p.MaxAttempts
	p.MaxBody = maxTokenBody
	t.endpoint = &vendorhttp.Client{
		Base: tokenURL,
		Vendor: vendorhttp.Vendor{
			Name:       tokenVendor,
			Credential: "the client credentials",
			ErrorText:  errorText,
			Forbidden: func(r *vendorhttp.Response) string {
				return tokenVendor + " refused the client credentials: " + errorText(r.Status, r.Body)
			},
		},
		// The credentials go in the form body; this only scrubs messages.
		Creds:  clientCredentials{t},
		HTTP:   hc,
		Policy: p,
		Sleep:  sleep,
	}
	once := *t.endpoint
	once.Policy.MaxAttempts = 1
	t.once = &once
	return t
}

// Authorize implements vendorhttp.Credentials: it sets a valid token on req,
// fetching one when none is cached. The error is an *providers.AuthError
// when the token endpoint refuses the client credentials, else a transient
// *vendorhttp.CallError.
func (t *tokenSource) Authorize(ctx context.Context, req *http.Request) error {
	tok, err := t.get(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// Renew implements vendorhttp.Credentials: Propel refused the token req
// carried (it expired early, or was revoked), so it is dropped and the call
// sent once more with a new one.
func (t *tokenSource) Renew(req *http.Request) bool {
	t.invalidate(strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer "))
	return true
}

// Scrub implements vendorhttp.Credentials.
func (t *tokenSource) Scrub(s string) string { return t.scrub(s) }

// clientCredentials are the credentials of the token requests: they travel
// in the form body, so there is nothing to set on the request, and nothing
// to renew; messages are scrubbed of the secret.
type clientCredentials struct{ t *tokenSource }

func (clientCredentials) Authorize(context.Context, *http.Request) error { return nil }
func (clientCredentials) Renew(*http.Request) bool                       { return false }
func (c clientCredentials) Scrub(s string) string                        { return c.t.scrub(s) }

// get returns a valid token, fetching one when none is cached.
func (t *tokenSource) get(ctx context.Context) (string, error) {
	if tok := t.cached(); tok != "" {
		return tok, nil
	}
	return t.fetchLocked(ctx, false)
}

// refresh fetches a new token even when a valid one is cached, so that
// refused credentials are noticed. It sends one request.
func (t *tokenSource) refresh(ctx context.Context) (string, error) {
	return t.fetchLocked(ctx, true)
}

// invalidate drops tok if it is still the cached token; a token another
// caller already replaced stays.
func (t *tokenSource) invalidate(tok string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token == tok {
		t.token = ""
	}
}

// scrub removes the client secret and the cached token from s.
func (t *tokenSource) scrub(s string) string {
	t.mu.Lock()
	tok := t.token
	t.mu.Unlock()
	s = strings.ReplaceAll(s, t.secret, "[redacted]")
	if tok != "" {
		s = strings.ReplaceAll(s, tok, "[redacted]")
	}
	return s
}

func (t *tokenSource) cached() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && time.Now().Before(t.refreshAt) {
		return t.token
	}
	return ""
}

// fetchLocked fetches a token while holding the fetch slot. Unless force is
// set, a token fetched by another caller in the meantime is used instead;
// force sends a single request.
func (t *tokenSource) fetchLocked(ctx context.Context, force bool) (string, error) {
	select {
	case t.fetching <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-t.fetching }()
	api := t.once
	if !force {
		if tok := t.cached(); tok != "" {
			return tok, nil
		}
		api = t.endpoint
	}
	tok, lifetime, err := t.fetch(ctx, api)
	if err != nil {
		return "", err
	}
	margin := min(refreshMargin, lifetime/10)
	t.mu.Lock()
	t.token = tok
	t.refreshAt = time.Now().Add(lifetime - margin)
	t.mu.Unlock()
	return tok, nil
}

// tokenResponse is the token endpoint's answer. Propel sends expires_in as
// a string; a number is accepted too. Its token_type, "BearerToken", is not
// checked: the token is sent as a Bearer token whatever the answer says.
type tokenResponse struct {
	AccessToken string     `json:"access_token"`
	ExpiresIn   flexString `json:"expires_in"`
}

// fetch runs the client-credentials grant with api. The credentials go in
// the form body only: RFC 6749 forbids using two client authentication
// methods in one request. A refusal of the credentials (400, 401, 403) is an
// *providers.AuthError; any other failure a transient *vendorhttp.CallError.
func (t *tokenSource) fetch(ctx context.Context, api *vendorhttp.Client) (string, time.Duration, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {t.clientID},
		"client_secret": {t.secret},
	}
	resp, err := api.Do(ctx, vendorhttp.Request{Method: http.MethodPost, RawBody: []byte(form.Encode()),
		ContentType: "application/x-www-form-urlencoded", Idempotent: true, Endpoint: "oauth2/token"})
	if err != nil {
		var ce *vendorhttp.CallError
		if errors.As(err, &ce) {
			// Whether the token request reached Propel says nothing about
			// the API call it was fetched for.
			ce.Uncertain = false
		}
		return "", 0, err
	}
	switch {
	case resp.Status == http.StatusBadRequest:
		return "", 0, &providers.AuthError{StatusCode: resp.Status, Reason: "Unauthorized",
			Message: t.clean(tokenVendor + " refused the client credentials: " + errorText(resp.Status, resp.Body))}
	case !resp.OK():
		return "", 0, t.failed(resp.Status, fmt.Sprintf("%s answered HTTP %d: %s", tokenVendor, resp.Status, errorText(resp.Status, resp.Body)))
	}
	var tr tokenResponse
	if err := json.Unmarshal(resp.Body, &tr); err != nil {
		return "", 0, t.failed(resp.Status, tokenVendor+" answered an unreadable token: "+err.Error())
	}
	if tr.AccessToken == "" {
		return "", 0, t.failed(resp.Status, tokenVendor+" answered without an access token")
	}
	lifetime := defaultTokenLifetime
	if s, err := strconv.ParseFloat(strings.TrimSpace(string(tr.ExpiresIn)), 64); err == nil && s > 0 {
		lifetime = time.Duration(s * float64(time.Second))
	}
	return tr.AccessToken, lifetime, nil
}

// failed is the transient failure of a token request the endpoint answered
// with something other than a token.
func (t *tokenSource) failed(status int, msg string) *vendorhttp.CallError {
	return &vendorhttp.CallError{Status: status, Code: vendorhttp.CodeUnavailable, Message: t.clean(msg)}
}

// clean removes the credentials from a message and cuts it to what a record
// holds.
func (t *tokenSource) clean(s string) string {
	return providers.Truncate(t.scrub(s), providers.MaxMessageLength)
}
