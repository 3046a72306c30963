package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
