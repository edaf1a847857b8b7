package sdk

import "github.com/presenced/presenced/abi"

// SameResource reports whether two URIs name the same presentity, so a
// module can check that a document's entity is the resource it was
// published to. The rules are abi.Presentity's, the host's own: sip, sips
// and pres alike, the port dropped, the host without case, the user with
// case after decoding unreserved %-escapes, and parameters, headers and
// display names ignored. A URI that names no presentity is the same as
// nothing.
func SameResource(a, b string) bool {
	ka, ok := abi.Presentity(a)
	if !ok {
		return false
	}
	if a == b {
		// The usual entity is written as the resource is: a reduction
		// costs about 1 µs in a guest.
		return true
	}
	kb, _ := abi.Presentity(b)
	return ka == kb
}

// ResourceKey returns the canonical form SameResource compares
// ("sip:alice@example.com", see abi.Presentity), for use as a map key, or
// "" for a URI that names no presentity.
func ResourceKey(uri string) string {
	key, _ := abi.Presentity(uri)
	return key
}
