package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    string
		wantErr string
	}{
		{args: nil, want: "1x10,20x500,200x500"},
		{args: []string{"-points", "10x1,2X300"}, want: "10x1,2x300"},
		{args: []string{"-syncs", "3"}, want: "3x500"},
		{args: []string{"-points", "10x1000"}, wantErr: "at most 500 users"},
		{args: []string{"-points", "10"}, wantErr: "want SYNCSxUSERS"},
		{args: []string{"-points", "1x1", "-users", "2"}, wantErr: "either -points or -syncs/-users"},
		{args: []string{"-scenario", "nope"}, wantErr: "-scenario"},
		{args: []string{"-pprof", "/tmp/p", "-out", "x.md"}, wantErr: "-pprof"},
		{args: []string{"-scenario", "verify"}, want: "1x10,20x500,200x500"},
		{args: []string{"-scenario", "scim"}, want: "1x10,20x500,200x500"}, // runSCIM defaults to 20x500
	} {
		cfg, err := parseFlags(flag.NewFlagSet("bench", flag.ContinueOnError), tc.args)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		var got []string
		for _, p := range cfg.points {
			got = append(got, p.String())
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%q: points %v, want %s", tc.args, got, tc.want)
		}
	}
}

func TestRefreshDoc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.md")
	if err := refreshDoc(path, "points", "one\n"); err != nil {
		t.Fatal(err)
	}
	if err := refreshDoc(path, "ratelimit", "rl\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	// Hand-written text around the blocks survives a refresh.
	if err := os.WriteFile(path, []byte("intro\n"+string(b)+"\nfindings\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := refreshDoc(path, "points", "two\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	s := string(b)
	for _, want := range []string{"intro\n", "two\n", "rl\n", "\nfindings\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("refreshed doc lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "one\n") || strings.Count(s, ":begin") != 2 || strings.Count(s, ":end") != 2 {
		t.Errorf("refreshed doc:\n%s", s)
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 100000: "100,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %s, want %s", n, got, want)
		}
	}
	if plural(1, "call") != "1 call" || plural(1000, "call") != "1,000 calls" {
		t.Error("plural")
	}
	if ceilDiv(100000, 100) != 1000 || ceilDiv(10, 100) != 1 || ceilDiv(101, 100) != 2 {
		t.Error("ceilDiv")
	}
}

func TestVerifyScenario(t *testing.T) {
	cfg, err := parseFlags(flag.NewFlagSet("bench", flag.ContinueOnError), []string{"-scenario", "verify"})
	if err != nil {
		t.Fatal(err)
	}
	sr := limitedScenario(cfg, scenarioVerify)
	if !sr.verify || sr.backlog || sr.rateLimit != ratelimitLimit || sr.rateWindow != ratelimitWindow || len(sr.points) != 1 || sr.points[0].String() != verifyPoints {
		t.Errorf("verify scenario %+v", sr)
	}
	if got := commandLine(cfg, sr); got != "go run ./hack/bench -scenario verify" {
		t.Errorf("command line %q", got)
	}
	cfg, err = parseFlags(flag.NewFlagSet("bench", flag.ContinueOnError), []string{"-scenario", "verify", "-rate-limit", "50", "-rate-window", "1s", "-verify-writes", "1"})
	if err != nil {
		t.Fatal(err)
	}
	sr = limitedScenario(cfg, scenarioVerify)
	if got, want := commandLine(cfg, sr), "go run ./hack/bench -scenario verify -rate-limit 50 -rate-window 1s -verify-writes 1"; got != want {
		t.Errorf("command line %q, want %q", got, want)
	}
	if _, err := parseFlags(flag.NewFlagSet("bench", flag.ContinueOnError), []string{"-verify-writes", "-1"}); err == nil {
		t.Error("-verify-writes -1 accepted")
	}
	// Writes go past the first window, alternately mid-window and at a
	// window's end, and always before the pass's last read.
	for _, tc := range []struct{ k, limit, reads, want int }{
		{0, 100, 1000, 150}, {1, 100, 1000, 200}, {2, 100, 1000, 250}, {0, 100, 120, 119}, {0, 100, 1, 0},
	} {
		if got := midPassTrigger(tc.k, tc.limit, tc.reads); got != tc.want {
			t.Errorf("midPassTrigger(%d, %d, %d) = %d, want %d", tc.k, tc.limit, tc.reads, got, tc.want)
		}
	}
}

func TestCallLog(t *testing.T) {
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	log := []emulation.Call{
		{Endpoint: hsemu.EndpointRead, At: at(0)}, {Endpoint: hsemu.EndpointList, At: at(1)}, {Endpoint: hsemu.EndpointRead, At: at(2)},
		{Endpoint: hsemu.EndpointRead, At: at(3)}, {Endpoint: hsemu.EndpointUpdate, Inputs: 1, At: at(4)}, {Endpoint: hsemu.EndpointRead, At: at(6)},
	}
	if f, l := callSpan(log, hsemu.EndpointRead); !f.Equal(at(0)) || !l.Equal(at(6)) {
		t.Errorf("callSpan = %v, %v", f, l)
	}
	if f, l := callSpan(log, hsemu.EndpointCreate); !f.IsZero() || !l.IsZero() {
		t.Error("callSpan without a call")
	}
	upd, ok := firstCallFrom(log, hsemu.EndpointUpdate, at(2))
	if !ok || !upd.At.Equal(at(4)) || upd.Inputs != 1 {
		t.Errorf("firstCallFrom = %+v, %t", upd, ok)
	}
	if _, ok := firstCallFrom(log, hsemu.EndpointUpdate, at(5)); ok {
		t.Error("firstCallFrom after the last update")
	}
	// [from, to): the read at 2 counts, the update's moment does not.
	if n := readsIn(log, at(2), at(4)); n != 2 {
		t.Errorf("readsIn = %d, want 2", n)
	}
	if n := changedRows([]syncRow{{name: "a", rv: "1"}, {name: "b", rv: "2"}}, []syncRow{{name: "a", rv: "1"}, {name: "b", rv: "3"}}); n != 1 {
		t.Errorf("changedRows = %d, want 1", n)
	}
}

func TestSCIMReport(t *testing.T) {
	pts, _ := parsePoints(scimPoint)
	sr := &scenarioRun{name: scenarioSCIM, points: pts}
	ph := func(calls map[string]int) scimPhase {
		n := 0
		for _, c := range calls {
			n += c
		}
		return scimPhase{converged: true, took: 20 * time.Second, calls: calls, total: n, cpu: 1}
	}
	md := renderSCIM(&config{latency: 20 * time.Millisecond}, sr, []*scimResult{
		{bulk: true, create: ph(map[string]int{"POST /Bulk": 100}), update: ph(map[string]int{"POST /Bulk": 100}), users: 10000,
			profileOps: 100, profilePayload: 1 << 20, providerRequest: 10000},
		{bulk: false, create: ph(map[string]int{"POST /Users": 10000}), update: ph(map[string]int{"GET /Users/{id}": 10000, "PATCH /Users/{id}": 10000}),
			users: 10001, duplicates: 1, profileOps: 100, profilePayload: 1 << 20, providerRequest: 10000},
	})
	for _, want := range []string{"### SCIM 2.0: 10,000 users", "| Auto | creates | yes | 20.0 s | 100 | 100 `POST /Bulk` |",
		"| Never | updates | yes | 20.0 s | 20,000 | 10,000 `GET /Users/{id}`, 10,000 `PATCH /Users/{id}` |", "10,001 (1 duplicates)"} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
}
