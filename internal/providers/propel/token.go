package propel

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
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
)

// tokenSource fetches and caches access tokens of the client-credentials
// grant. It is safe for concurrent use; concurrent callers that find no
// valid token wait for a single fetch.
type tokenSource struct {
	url      string
	clientID string
	secret   string
	http     *http.Client

	// fetching holds a value while a token is being fetched.
	fetching chan struct{}

	mu        sync.Mutex
	token     string
	refreshAt time.Time
}

func newTokenSource(tokenURL, clientID, secret string, hc *http.Client) *tokenSource {
	return &tokenSource{
		url:      tokenURL,
		clientID: clientID,
		secret:   secret,
		http:     hc,
		fetching: make(chan struct{}, 1),
	}
}

// get returns a valid token, fetching one when none is cached.
func (t *tokenSource) get(ctx context.Context) (string, error) {
	if tok := t.cached(); tok != "" {
		return tok, nil
	}
	return t.fetchLocked(ctx, false)
}

// refresh fetches a new token even when a valid one is cached, so that
// refused credentials are noticed.
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
// set, a token fetched by another caller in the meantime is used instead.
func (t *tokenSource) fetchLocked(ctx context.Context, force bool) (string, error) {
	select {
	case t.fetching <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-t.fetching }()
	if !force {
		if tok := t.cached(); tok != "" {
			return tok, nil
		}
	}
	tok, lifetime, err := t.fetch(ctx)
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

// fetch runs the client-credentials grant. The credentials go in the form
// body only: RFC 6749 forbids using two client authentication methods in one
// request.
func (t *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {t.clientID},
		"client_secret": {t.secret},
	}
	req, err := http.NewRequestWithContext(providers.NameEndpoint(ctx, "oauth2/token"), http.MethodPost, t.url, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("propel token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := t.http.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("propel token request: %s", t.scrub(err.Error()))
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil {
		return "", 0, fmt.Errorf("propel token request: reading the answer: %s", t.scrub(err.Error()))
	}
	switch {
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized:
		return "", 0, t.refused(resp.StatusCode, "Unauthorized", body)
	case resp.StatusCode == http.StatusForbidden:
		return "", 0, t.refused(resp.StatusCode, "Forbidden", body)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return "", 0, fmt.Errorf("propel token endpoint answered HTTP %d: %s",
			resp.StatusCode, t.scrub(decodeError(body).text(resp.StatusCode)))
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", 0, fmt.Errorf("propel token endpoint answered an unreadable token: %v", err)
	}
	if tr.AccessToken == "" {
		return "", 0, fmt.Errorf("propel token endpoint answered without an access token")
	}
	lifetime := defaultTokenLifetime
	if s, err := strconv.ParseFloat(strings.TrimSpace(string(tr.ExpiresIn)), 64); err == nil && s > 0 {
		lifetime = time.Duration(s * float64(time.Second))
	}
	return tr.AccessToken, lifetime, nil
}

// refused is the AuthError for a token endpoint that refused the
// credentials.
func (t *tokenSource) refused(status int, reason string, body []byte) error {
	return &providers.AuthError{
		StatusCode: status,
		Reason:     reason,
		Message: truncate(t.scrub("Propel token endpoint refused the client credentials: " +
			decodeError(body).text(status))),
	}
}
