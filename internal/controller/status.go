package controller

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
)

// summarize recomputes a UserSync's summary, observedGeneration and
// conditions from its spec and the records of every provider. Any provider's
// loop can call it: the result depends only on the object. users, when not
// nil, are the spec's users already hashed (for us.Generation): hashing
// 500 users again for every status write was most of a write's cost.
func summarize(us *usersv1.UserSync, users []planner.Desired) {
	gen := us.Generation
	hashes := make(map[string]string, len(us.Spec.Users))
	if len(users) == len(us.Spec.Users) {
		for i := range users {
			hashes[users[i].User.Key] = users[i].Hash
		}
	} else {
		for i := range us.Spec.Users {
			hashes[us.Spec.Users[i].Key] = planner.Hash(toProviderUser(&us.Spec.Users[i]))
		}
	}
	listed := map[string]bool{}
	for _, ref := range us.Spec.ProviderRefs {
		listed[ref.String()] = true
	}
	deleting := !us.DeletionTimestamp.IsZero()

	var s usersv1.Summary
	var leftover int32
	var firstFailure *usersv1.RecordResult
	for i := range us.Status.Results {
		r := &us.Status.Results[i]
		h, declared := hashes[r.Key]
		if deleting || !declared || !listed[r.Provider] {
			leftover++
			continue
		}
		switch {
		case r.State == usersv1.StateSynced && r.Hash == h:
			s.Synced++
		case r.State == usersv1.StateFailed && r.Hash == h:
			s.Failed++
			if firstFailure == nil {
				firstFailure = r
			}
		}
	}
	if !deleting {
		s.Desired = int32(len(us.Spec.Users) * len(us.Spec.ProviderRefs))
	}
	s.Pending = s.Desired - s.Synced - s.Failed
	us.Status.Summary = s

	// Every listed provider must have seen this generation.
	allObserved := true
	var unusable, noDelete *usersv1.ProviderSyncStatus
	entries := map[string]*usersv1.ProviderSyncStatus{}
	for i := range us.Status.Providers {
		entries[us.Status.Providers[i].Provider] = &us.Status.Providers[i]
	}
	for _, ref := range us.Spec.ProviderRefs {
		e := entries[ref.String()]
		if e == nil || e.ObservedGeneration != gen {
			allObserved = false
			continue
		}
		switch e.Reason {
		case usersv1.ReasonProviderNotFound, usersv1.ReasonNotPermitted, usersv1.ReasonProviderNotReady, usersv1.ReasonDeletionHeld:
			if unusable == nil {
				unusable = e
			}
		case usersv1.ReasonDeletionUnsupported:
			if noDelete == nil {
				noDelete = e
			}
		}
	}
	if allObserved {
		us.Status.ObservedGeneration = gen
	}

	set := func(t string, st metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&us.Status.Conditions, metav1.Condition{Type: t, Status: st,
			Reason: reason, Message: msg, ObservedGeneration: gen})
	}
	switch {
	case deleting:
		set(usersv1.ConditionReady, metav1.ConditionFalse, usersv1.ReasonDeleting,
			fmt.Sprintf("the UserSync is being deleted: %d records left to delete or forget", leftover))
	case unusable != nil:
		set(usersv1.ConditionReady, metav1.ConditionFalse, unusable.Reason, unusable.Message)
	case us.Spec.Suspend && (s.Pending > 0 || leftover > 0):
		set(usersv1.ConditionReady, metav1.ConditionFalse, usersv1.ReasonSuspended,
			fmt.Sprintf("spec.suspend is true: %d records wait", s.Pending+leftover))
	case !allObserved:
		set(usersv1.ConditionReady, metav1.ConditionFalse, usersv1.ReasonPending,
			fmt.Sprintf("generation %d is not yet synced by every provider", gen))
	case s.Synced == s.Desired && leftover == 0:
		set(usersv1.ConditionReady, metav1.ConditionTrue, usersv1.ReasonSynced,
			fmt.Sprintf("all %d records are synced", s.Desired))
	case s.Failed > 0:
		set(usersv1.ConditionReady, metav1.ConditionFalse, usersv1.ReasonFailed,
			fmt.Sprintf("%d of %d records failed, %d pending", s.Failed, s.Desired, s.Pending))
	default:
		set(usersv1.ConditionReady, metav1.ConditionFalse, usersv1.ReasonPending,
			fmt.Sprintf("%d of %d records pending, %d to delete", s.Pending, s.Desired, leftover))
	}

	if (s.Pending > 0 || leftover > 0 || !allObserved) && !us.Spec.Suspend {
		set(usersv1.ConditionProgressing, metav1.ConditionTrue, usersv1.ReasonPending,
			fmt.Sprintf("%d records to write, %d to delete or forget", s.Pending, leftover))
	} else {
		set(usersv1.ConditionProgressing, metav1.ConditionFalse, usersv1.ReasonSynced, "no write is pending")
	}

	switch {
	case unusable != nil:
		set(usersv1.ConditionDegraded, metav1.ConditionTrue, unusable.Reason,
			fmt.Sprintf("provider %s: %s", unusable.Provider, unusable.Message))
	case firstFailure != nil:
		set(usersv1.ConditionDegraded, metav1.ConditionTrue, usersv1.ReasonFailed,
			planner.Truncate(fmt.Sprintf("%d records failed; first: %s key %s: %s", s.Failed,
				firstFailure.Provider, firstFailure.Key, firstFailure.Message), 1024))
	case noDelete != nil:
		set(usersv1.ConditionDegraded, metav1.ConditionTrue, noDelete.Reason,
			fmt.Sprintf("provider %s: %s", noDelete.Provider, noDelete.Message))
	default:
		set(usersv1.ConditionDegraded, metav1.ConditionFalse, usersv1.ReasonProvidersHealthy, "no record failed")
	}

	if us.Spec.Suspend {
		set(usersv1.ConditionSuspended, metav1.ConditionTrue, usersv1.ReasonSuspended,
			"spec.suspend is true: nothing is written to the providers")
	} else {
		meta.RemoveStatusCondition(&us.Status.Conditions, usersv1.ConditionSuspended)
	}
}
