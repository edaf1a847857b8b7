package header

import "github.com/emiago/sipgo/sip"

// All is req's headers named name, in order, as sipgo's GetHeaders finds
// them, without the lower-cased copy of every header's name GetHeaders
// makes on each call: a new string for each header not among the dozen
// it knows (Event, Expires, Accept...), several lookups per request.
func All(req *sip.Request, name string) []sip.Header {
	var out []sip.Header
	for _, h := range req.Headers() {
		if SameName(h.Name(), name) {
			out = append(out, h)
		}
	}
	return out
}

// Get is the first of req's headers named name, or nil: sipgo's
// GetHeader, as All finds them.
func Get(req *sip.Request, name string) sip.Header {
	for _, h := range req.Headers() {
		if SameName(h.Name(), name) {
			return h
		}
	}
	return nil
}

// SameName reports whether a and b name the same header: equal but for
// the case of ASCII letters, as sipgo compares header names (a compact
// form arrives under its full name, Parsers).
func SameName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
