package controller

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
)

// summarize recomputes a UserSync's summary, providerNames, observedGeneration and
// conditions from its spec and the records of every provider. Any provider's
// loop can call it: the result depends on the object and on each provider's
// attributeMapping (a record is current when its hash is what the provider
// would write now). hashes gives, per provider (status form), the current
// hash of each user by key: the writing loop's are already computed, the
// others come from the desired cache (hashing 500 users again for every
// status write was most of a write's cost).
func summarize(us *usersv1.UserSync, hashes func(ref string) map[string]string) {
	c := countRecords(us, hashes)
	us.Status.Summary = c.Summary
	us.Status.ProviderNames = usersv1.ProviderNames(us.Spec.ProviderRefs)
	p := readProviders(us)
	if p.allObserved {
		us.Status.ObservedGeneration = us.Generation
	}
	setConditions(us, c, p)
}

// recordCounts is what a UserSync's records say, over every provider.
type recordCounts struct {
	usersv1.Summary
	// leftover counts the records left to delete or forget: of users no
	// longer declared, of providers no longer listed, or of a deleted
	// UserSync.
	leftover int32
	// firstFailure is a failed record of the current spec, if any;
	// firstDrift a Drifted one.
	firstFailure, firstDrift *usersv1.RecordResult
}

// countRecords counts the records of every listed provider that are synced
// or failed with the declared content (a record of an older hash is pending).
func countRecords(us *usersv1.UserSync, hashesOf func(ref string) map[string]string) recordCounts {
	hashes := map[string]map[string]string{}
	for _, ref := range us.Spec.ProviderRefs {
		hashes[ref.String()] = hashesOf(ref.String())
	}
	deleting := !us.DeletionTimestamp.IsZero()
	var c recordCounts
	for i := range us.Status.Results {
		r := &us.Status.Results[i]
		byKey, listed := hashes[r.Provider]
		h, declared := byKey[r.Key]
		switch {
		case deleting || !declared || !listed:
			c.leftover++
		case r.State == usersv1.StateSynced && r.Hash == h:
			c.Synced++
		case r.State == usersv1.StateFailed && r.Hash == h:
			c.Failed++
			if c.firstFailure == nil {
				c.firstFailure = r
			}
		case r.State == usersv1.StateDrifted && r.Hash == h:
			c.Drifted++
			if c.firstDrift == nil {
				c.firstDrift = r
			}
		}
	}
	if !deleting {
		c.Desired = int32(len(us.Spec.Users) * len(us.Spec.ProviderRefs))
	}
	c.Pending = max(c.Desired-c.Synced-c.Failed-c.Drifted, 0)
	return c
}

// providerLines is what the listed providers' lines in status.providers say.
type providerLines struct {
	// allObserved: every listed provider has synced this generation.
	allObserved bool
	// blocked is the first line whose reason stops the UserSync (blocking);
	// noDelete the first that cannot honour deletionPolicy Delete.
	blocked, noDelete *usersv1.ProviderSyncStatus
}

func readProviders(us *usersv1.UserSync) providerLines {
	entries := map[string]*usersv1.ProviderSyncStatus{}
	for i := range us.Status.Providers {
		entries[us.Status.Providers[i].Provider] = &us.Status.Providers[i]
	}
	p := providerLines{allObserved: true}
	for _, ref := range us.Spec.ProviderRefs {
		e := entries[ref.String()]
		switch {
		case e == nil || e.ObservedGeneration != us.Generation:
			p.allObserved = false
		case blocking(e.Reason) && p.blocked == nil:
			p.blocked = e
		case e.Reason == usersv1.ReasonDeletionUnsupported && p.noDelete == nil:
			p.noDelete = e
		}
	}
	return p
}

// setConditions sets Ready, Progressing, Degraded and Suspended.
func setConditions(us *usersv1.UserSync, c recordCounts, p providerLines) {
	set := func(t string, st metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&us.Status.Conditions, metav1.Condition{Type: t, Status: st,
			Reason: reason, Message: msg, ObservedGeneration: us.Generation})
	}
	st, reason, msg := readyCondition(us, c, p)
	set(usersv1.ConditionReady, st, reason, msg)

	if (c.Pending > 0 || c.leftover > 0 || !p.allObserved) && !us.Spec.Suspend {
		set(usersv1.ConditionProgressing, metav1.ConditionTrue, usersv1.ReasonPending,
			fmt.Sprintf("%d records to write, %d to delete or forget", c.Pending, c.leftover))
	} else {
		set(usersv1.ConditionProgressing, metav1.ConditionFalse, usersv1.ReasonSynced, "no write is pending")
	}

	switch {
	case p.blocked != nil:
		set(usersv1.ConditionDegraded, metav1.ConditionTrue, p.blocked.Reason,
			fmt.Sprintf("provider %s: %s", p.blocked.Provider, p.blocked.Message))
	case c.firstFailure != nil:
		set(usersv1.ConditionDegraded, metav1.ConditionTrue, usersv1.ReasonFailed,
			planner.Truncate(fmt.Sprintf("%d records failed; first: %s key %s: %s", c.Failed,
				c.firstFailure.Provider, c.firstFailure.Key, c.firstFailure.Message), maxConditionMessage))
	case p.noDelete != nil:
		set(usersv1.ConditionDegraded, metav1.ConditionTrue, p.noDelete.Reason,
			fmt.Sprintf("provider %s: %s", p.noDelete.Provider, p.noDelete.Message))
	default:
		set(usersv1.ConditionDegraded, metav1.ConditionFalse, usersv1.ReasonProvidersHealthy, "no record failed")
	}

	if pc := plannedCondition(us); pc != nil {
		meta.SetStatusCondition(&us.Status.Conditions, *pc)
	} else {
		meta.RemoveStatusCondition(&us.Status.Conditions, usersv1.ConditionPlanned)
	}

	if c.firstDrift != nil {
		set(usersv1.ConditionDrifted, metav1.ConditionTrue, c.firstDrift.Reason,
			planner.Truncate(fmt.Sprintf("%d users differ at the vendor and are left so (driftPolicy Report); first: %s key %s: %s",
				c.Drifted, c.firstDrift.Provider, c.firstDrift.Key, c.firstDrift.Message), maxConditionMessage))
	} else {
		set(usersv1.ConditionDrifted, metav1.ConditionFalse, usersv1.ReasonNoDrift, "no user was found different at the vendor")
	}

	if us.Spec.Suspend {
		set(usersv1.ConditionSuspended, metav1.ConditionTrue, usersv1.ReasonSuspended,
			"spec.suspend is true: nothing is written to the providers")
	} else {
		meta.RemoveStatusCondition(&us.Status.Conditions, usersv1.ConditionSuspended)
	}
}

// readyCondition is the Ready condition's status, reason and message.
func readyCondition(us *usersv1.UserSync, c recordCounts, p providerLines) (metav1.ConditionStatus, string, string) {
	switch {
	case !us.DeletionTimestamp.IsZero():
		return metav1.ConditionFalse, usersv1.ReasonDeleting,
			fmt.Sprintf("the UserSync is being deleted: %d records left to delete or forget", c.leftover)
	case p.blocked != nil:
		return metav1.ConditionFalse, p.blocked.Reason, p.blocked.Message
	case us.Spec.Suspend && (c.Pending > 0 || c.leftover > 0):
		return metav1.ConditionFalse, usersv1.ReasonSuspended,
			fmt.Sprintf("spec.suspend is true: %d records wait", c.Pending+c.leftover)
	case len(us.Status.Plan) > 0:
		return metav1.ConditionFalse, usersv1.ReasonPlanned,
			"spec.mode is Plan: changes wait for approval (see the Planned condition)"
	case !p.allObserved:
		return metav1.ConditionFalse, usersv1.ReasonPending,
			fmt.Sprintf("generation %d is not yet synced by every provider", us.Generation)
	case c.Synced == c.Desired && c.leftover == 0:
		return metav1.ConditionTrue, usersv1.ReasonSynced, fmt.Sprintf("all %d records are synced", c.Desired)
	case c.Failed > 0:
		return metav1.ConditionFalse, usersv1.ReasonFailed,
			fmt.Sprintf("%d of %d records failed, %d pending", c.Failed, c.Desired, c.Pending)
	case c.Drifted > 0 && c.Pending == 0:
		return metav1.ConditionFalse, usersv1.ConditionDrifted,
			fmt.Sprintf("%d of %d records differ at the vendor (driftPolicy Report)", c.Drifted, c.Desired)
	}
	return metav1.ConditionFalse, usersv1.ReasonPending,
		fmt.Sprintf("%d of %d records pending, %d to delete", c.Pending, c.Desired, c.leftover)
}
