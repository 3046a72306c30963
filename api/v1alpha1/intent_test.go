package v1alpha1

import (
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A provider status written by an operator whose createsInFlight held plain
// UIDs still decodes; the current form round-trips.
func TestCreateIntentDecodes(t *testing.T) {
	sent := metav1.NewTime(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	for name, tc := range map[string]struct {
		in   string
		want []CreateIntent
	}{
		"plain UIDs (before sendTime)": {in: `["a","b"]`, want: []CreateIntent{{UID: "a"}, {UID: "b"}}},
		"intents":                      {in: `[{"uid":"a","sendTime":"2026-12-03T10:00:00Z"}]`, want: []CreateIntent{{UID: "a", SendTime: sent}}},
		"both":                         {in: `["a",{"uid":"b","sendTime":"2026-12-03T10:00:00Z"}]`, want: []CreateIntent{{UID: "a"}, {UID: "b", SendTime: sent}}},
	} {
		t.Run(name, func(t *testing.T) {
			var got []CreateIntent
			if err := json.Unmarshal([]byte(tc.in), &got); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].UID != tc.want[i].UID || !got[i].SendTime.Equal(&tc.want[i].SendTime) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
	b, err := json.Marshal(CreateIntent{UID: "a", SendTime: sent})
	if err != nil || string(b) != `{"uid":"a","sendTime":"2026-12-03T10:00:00Z"}` {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	var bad CreateIntent
	if err := json.Unmarshal([]byte(`42`), &bad); err == nil {
		t.Fatal("a number decoded as an intent")
	}
}
