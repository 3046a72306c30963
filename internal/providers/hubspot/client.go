package hubspot

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// Client talks to one HubSpot account.
type Client struct {
	// api sends the calls, to .../crm/v3/objects/users, and applies the
	// retry rules (see vendorhttp); vendor describes HubSpot's answers to it.
	api        *vendorhttp.Client
	batch      int
	idProperty string
	idFrom     string
	// adopt: without an idProperty, look new users up by email before
	// creating them (spec.hubspot.adoption Email, the default).
	adopt bool
	// indexDelay is how long search may trail a create
	// (spec.hubspot.searchIndexDelay); now tells the time.
	indexDelay time.Duration
	now        func() time.Time
	// searches keeps to HubSpot's own search budget (SearchRate), which
	// is counted apart from spec.rateLimit.
	searches *rate.Limiter
	// emailReads says whether HubSpot reads users by email with batch/read
	// (hs_email has unique values in the portal): emailUnknown until the
	// first lookup tries it.
	emailReads atomic.Int32
}

// Values of Client.emailReads.
const (
	emailUnknown int32 = iota
	emailReadable
	emailSearchOnly
)

var (
	_ providers.Client       = (*Client)(nil)
	_ providers.CreateSafety = (*Client)(nil)
)

// statusMigrationInProgress is HubSpot's 477: the account is being migrated
// between data centres.
const statusMigrationInProgress = 477

// hdrInterval is the header of HubSpot's rate limit answers that gives the
// length of the rate limit window.
const hdrInterval = "X-HubSpot-RateLimit-Interval-Milliseconds"

// Waits HubSpot documents, used when its answer carries no Retry-After.
const (
	lockedWait    = 2 * time.Second  // 423: "Locks will last for 2 seconds"
	rateLimitWait = 10 * time.Second // 429: the ten-second window
	migrationWait = 5 * time.Second  // 477 without Retry-After
)

// vendor is how HubSpot answers, for vendorhttp: its Error object, its
// throttling statuses and its missing-scope refusals.
var vendor = vendorhttp.Vendor{
	Name:      "HubSpot",
	ErrorText: func(status int, body []byte) string { return errorOf(status, body).text() },
	Throttle:  throttle,
	Forbidden: func(r *vendorhttp.Response) string {
		e := errorOf(r.Status, r.Body)
		if s := e.missingScopes(); len(s) > 0 {
			return "the token lacks the scopes " + strings.Join(s, ", ")
		}
		return "HubSpot refused the call: " + e.text()
	},
}

// throttle reads the answers by which HubSpot refuses a call before doing
// anything: 429 (rate limit), 423 (an object locked by a high-volume sync)
// and 477 (an account migration). Each is waited out for as long as HubSpot
// asks, or as long as it documents, and then resent, except a 429 of the
// daily limit: waiting seconds will not help, the daily budget resets at
// midnight in the account's time zone.
func throttle(r *vendorhttp.Response) (vendorhttp.Throttle, bool) {
	wait := func(def time.Duration) time.Duration {
		if d, ok := providers.RetryAfter(r.Header); ok {
			return d
		}
		return def
	}
	switch r.Status {
	case http.StatusTooManyRequests:
		e := errorOf(r.Status, r.Body)
		// Without Retry-After the window is exhausted: wait one interval,
		// the documented advice.
		def := rateLimitWait
		if ms, err := strconv.Atoi(strings.TrimSpace(r.Header.Get(hdrInterval))); err == nil && ms > 0 {
			def = time.Duration(ms) * time.Millisecond
		}
		return vendorhttp.Throttle{Code: vendorhttp.CodeRateLimited, Message: "HubSpot rate limit: " + e.text(),
			Wait: wait(def), Exact: true, Final: strings.EqualFold(e.PolicyName, "DAILY")}, true
	case http.StatusLocked:
		return vendorhttp.Throttle{Code: "Locked", Message: "HubSpot locked the object for a high-volume sync",
			Wait: wait(lockedWait), Exact: true}, true
	case statusMigrationInProgress:
		return vendorhttp.Throttle{Code: "MigrationInProgress", Message: "HubSpot is migrating the account",
			Wait: wait(migrationWait), Exact: true}, true
	}
	return vendorhttp.Throttle{}, false
}

// policy is vendorhttp's default (six sends, three after a 5xx or no
// answer, 1 s, 2 s, 4 s, ... up to 30 s), following a Retry-After of 0 too.
func policy() vendorhttp.Policy {
	p := vendorhttp.DefaultPolicy()
	p.ExactRetryAfter = true
	return p
}

// Verify implements providers.Client with the cheapest authenticated read.
func (c *Client) Verify(ctx context.Context) error {
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: "?limit=1&archived=false",
		Idempotent: true, Endpoint: "list"})
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		e := errorOf(resp.Status, resp.Body)
		return fmt.Errorf("HubSpot answered HTTP %d to a read of users: %s", resp.Status, e.text())
	}
	return nil
}
