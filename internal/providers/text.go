package providers

import (
	"unicode/utf8"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// Bounds of the stored record fields, as the UserSync CRD enforces them:
// every message, reason and id the engine stores is cut to these.
const (
	MaxMessageLength    = usersv1.MaxMessageLength
	MaxReasonLength     = usersv1.MaxReasonLength
	MaxExternalIDLength = usersv1.MaxExternalIDLength
)

// Truncate cuts s to at most n bytes on a rune boundary, ending with "…"
// when cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := n - len(ell)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}
