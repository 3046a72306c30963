package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// The drift step: after convergence the demo changes two users of
// platform-team in the HubSpot emulator, as someone in HubSpot's UI would,
// and waits for the operator to read them back and correct them (the
// UserSync's default driftPolicy Correct).
const (
	driftSync     = "platform-team"
	driftProvider = "UserProvider/hubspot"
	driftProperty = "hs_job_title"
	// driftAttribute is the declared attribute the sample HubSpot
	// provider's attributeMapping writes to driftProperty.
	driftAttribute = "title"
	driftValue     = "Intern"
)

// showDrift edits one Synced HubSpot user of platform-team and archives
// another in the emulator, then waits until the first is Synced with action
// Corrected (the property back to its declared value in the emulator) and
// the second Synced with action Recreated under a new id. It prints each
// state the two records go through. It returns nil when ctx ends first.
func showDrift(ctx context.Context, c client.Client, em *hsemu.Emulator, say func(string), interval, timeout time.Duration, mgrErr <-chan error) error {
	var us usersv1.UserSync
	if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: driftSync}, &us); err != nil {
		return err
	}
	var synced []usersv1.RecordResult
	for _, r := range us.Status.Results {
		if r.Provider == driftProvider && r.State == usersv1.StateSynced && r.ExternalID != "" {
			synced = append(synced, r)
		}
	}
	sort.Slice(synced, func(a, b int) bool { return synced[a].Key < synced[b].Key })
	if len(synced) < 2 {
		return fmt.Errorf("drift: UserSync %s has %d Synced HubSpot users, the demo needs 2", driftSync, len(synced))
	}
	edited, deleted := synced[0], synced[1]
	declared, err := declaredString(&us, edited.Key, driftAttribute)
	if err != nil {
		return err
	}
	if !em.Edit(edited.ExternalID, map[string]string{driftProperty: driftValue}) {
		return fmt.Errorf("drift: the HubSpot emulator has no user %s (%s)", edited.ExternalID, edited.Key)
	}
	em.Archive(deleted.ExternalID)
	say(fmt.Sprintf("drift: edited %s of %s and deleted %s in the HubSpot emulator, behind the operator's back",
		driftProperty, edited.Key, deleted.Key))
	fmt.Printf("    %-6s HubSpot user %s: %s %q -> %q\n    %-6s HubSpot user %s archived\n",
		edited.Key+":", edited.ExternalID, driftProperty, declared, driftValue, deleted.Key+":", deleted.ExternalID)
	fmt.Printf("    the operator reads its users back every %s (the demo's spec.driftDetection.interval) and,\n    under driftPolicy Correct, writes them again; their records as they change:\n", interval)

	// The records' states as they change, one line each (not the states
	// they had before the edit).
	last := map[string]string{}
	show := func(r usersv1.RecordResult, printIt bool) {
		s := string(r.State)
		if r.Reason != "" {
			s += ", reason " + r.Reason
		}
		if r.Action != "" {
			s += ", action " + r.Action
		}
		if r.ExternalID != "" {
			s += ", id " + r.ExternalID
		}
		if r.State != usersv1.StateSynced && r.Message != "" {
			s += ": " + r.Message
		}
		if last[r.Key] != s {
			last[r.Key] = s
			if !printIt {
				return
			}
			fmt.Printf("    %-6s %s\n", r.Key+":", s)
		}
	}
	show(edited, false)
	show(deleted, false)
	deadline := time.After(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-mgrErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("operator stopped: %w", err)
		case <-deadline:
			now, _ := em.UserByID(edited.ExternalID)
			return fmt.Errorf("the operator did not correct the drift within %s (providers verify every %s): record %s is %q, HubSpot holds %s %q (declared %q); record %s is %q",
				timeout, interval, edited.Key, last[edited.Key], driftProperty, now.Properties[driftProperty], declared, deleted.Key, last[deleted.Key])
		case <-tick.C:
		}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: driftSync}, &us); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var ed, del *usersv1.RecordResult
		for i := range us.Status.Results {
			r := &us.Status.Results[i]
			if r.Provider != driftProvider {
				continue
			}
			switch r.Key {
			case edited.Key:
				ed = r
			case deleted.Key:
				del = r
			}
		}
		if ed == nil || del == nil {
			continue
		}
		show(*ed, true)
		show(*del, true)
		if ed.State != usersv1.StateSynced || ed.Action != usersv1.ActionCorrected ||
			del.State != usersv1.StateSynced || del.Action != usersv1.ActionRecreated ||
			del.ExternalID == "" || del.ExternalID == deleted.ExternalID {
			continue
		}
		// The status says so; the emulator must agree.
		u, ok := em.UserByID(ed.ExternalID)
		if !ok || u.Archived || u.Properties[driftProperty] != declared {
			continue
		}
		if n, ok := em.UserByID(del.ExternalID); !ok || n.Archived {
			continue
		}
		say(fmt.Sprintf("the operator corrected %s (%s back to %q) and re-created %s as HubSpot user %s",
			edited.Key, driftProperty, declared, deleted.Key, del.ExternalID))
		return nil
	}
}

// declaredString is the string value of attribute name of the user key.
func declaredString(us *usersv1.UserSync, key, name string) (string, error) {
	for i := range us.Spec.Users {
		u := &us.Spec.Users[i]
		if u.Key != key {
			continue
		}
		v, ok := u.Attributes[name]
		if !ok {
			return "", fmt.Errorf("drift: user %s of %s declares no %s", key, us.Name, name)
		}
		var s string
		if err := json.Unmarshal(v.Raw, &s); err != nil {
			return "", fmt.Errorf("drift: %s of user %s: %w", name, key, err)
		}
		return s, nil
	}
	return "", fmt.Errorf("drift: UserSync %s declares no user %s", us.Name, key)
}
