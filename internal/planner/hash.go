package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strconv"

	"github.com/usersync/usersync-operator/internal/providers"
)

// Hash returns a 16-hex-digit digest of what would be written for a user:
// its fields and attributes in a canonical order. Equal users hash equal
// whatever the order of their attributes in the manifest.
func Hash(u providers.User) string {
	h := sha256.New()
	field := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	field(u.Key)
	field(u.Email)
	field(u.FirstName)
	field(u.LastName)
	names := make([]string, 0, len(u.Attributes))
	for k := range u.Attributes {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		field(k)
		b, _ := json.Marshal(u.Attributes[k]) // a scalar: typed, so "1" and 1 differ
		field(string(b))
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:8])
}
