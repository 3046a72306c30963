package controller

import (
	"testing"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
)

// The planner tells a planned Create from one that may have been sent by
// the reason the engine gives a Plan hold (planner.MaySent).
func TestPlannedReasonIsTheAPIs(t *testing.T) {
	if planner.ReasonPlanned != usersv1.ReasonPlanned {
		t.Fatalf("planner.ReasonPlanned %q != usersv1.ReasonPlanned %q", planner.ReasonPlanned, usersv1.ReasonPlanned)
	}
}
