package providers

// ValueKind is the kind of value a mapping writes to a vendor attribute, as
// far as it is known before any user is mapped.
type ValueKind string

// Kinds of ValueKind. KindAny: a declared attribute renamed, or an
// expression whose type is known only per user.
const (
	KindAny    ValueKind = "any"
	KindString ValueKind = "string"
	KindNumber ValueKind = "number"
	KindBool   ValueKind = "bool"
)

// AttributeTargets is implemented by a Client whose vendor refuses some
// attribute names, or some kinds of value under a name: read-only
// properties, fields the client writes from the user itself (email, names,
// the identity), fields of a fixed type. The engine asks it for every entry
// of a provider's attributeMapping when the provider is checked, so that a
// mapping the vendor would refuse is refused before anything is written.
type AttributeTargets interface {
	// CheckTarget returns an error saying why a value of kind cannot be
	// written under name, or nil.
	CheckTarget(name string, kind ValueKind) error
}
