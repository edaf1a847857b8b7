package sdk

import "strings"

// SameResource reports whether two presentity URIs name the same resource,
// so a module can check that a document's entity is the resource it was
// published to. It follows RFC 3261 §19.1.4 loosely, for that one use: the
// schemes sip, sips and pres are treated alike (a PIDF entity is often a
// pres: URI while the request URI is sip:), the user part is compared
// case-sensitively after percent-decoding unreserved characters, the host
// case-insensitively, the default port equals no port, and display names,
// angle brackets, URI parameters and headers are ignored. An empty or
// unparsable URI is the same as nothing.
func SameResource(a, b string) bool {
	ka := ResourceKey(a)
	return ka != "" && ka == ResourceKey(b)
}

// ResourceKey returns the canonical form SameResource compares, for use as a
// map key ("sip:alice@example.com"). It returns "" for a URI it cannot make
// sense of.
func ResourceKey(uri string) string {
	s := strings.TrimSpace(uri)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		s = s[i+1:]
		if j := strings.IndexByte(s, '>'); j >= 0 {
			s = s[:j]
		}
		s = strings.TrimSpace(s)
	}
	if strings.ContainsAny(s, "<>") {
		return "" // an unbalanced bracket: not a URI (found by FuzzResourceKey)
	}
	colon := strings.IndexByte(s, ':')
	if colon <= 0 || !isScheme(s[:colon]) {
		return ""
	}
	scheme := strings.ToLower(s[:colon])
	rest := s[colon+1:]
	defaultPort := ""
	switch scheme {
	case "sip", "pres":
		scheme, defaultPort = "sip", "5060"
	case "sips":
		// Still the same resource as sip: a presentity does not change
		// with the transport's security, and 5061 is sips's default.
		scheme, defaultPort = "sip", "5061"
	}

	// The user part may itself hold ';' and '?' (RFC 3261 user-unreserved)
	// but never an unescaped '@', and parameters and headers never hold
	// '@' either, so the first '@' ends the userinfo.
	user := ""
	if at := strings.IndexByte(rest, '@'); at >= 0 {
		user, rest = rest[:at], rest[at+1:]
		if i := strings.IndexByte(user, ':'); i >= 0 {
			user = user[:i] // a password is not part of the identity
		}
		// To a fixed point: decoding "%7%30" makes a new "%70" (found by
		// FuzzResourceKey); each pass shortens or keeps the string.
		for next := normalizeEscapes(user); next != user; next = normalizeEscapes(user) {
			user = next
		}
		if user == "" {
			return ""
		}
	}
	if i := strings.IndexAny(rest, ";?"); i >= 0 {
		rest = rest[:i]
	}
	host := strings.ToLower(rest)
	// Neither part of a URI holds white space, quotes or brackets
	// unescaped; a string that does is not one (found by FuzzResourceKey).
	if host == "" || !uriChars(host) || !uriChars(user) {
		return ""
	}
	if defaultPort != "" {
		// Both default ports go, whichever the scheme: sip and sips share
		// one key, so keeping 5060 on a sips URI would make the key of the
		// key differ (found by FuzzResourceKey). Only a port that follows
		// the host is stripped, not a piece of an IPv6 literal.
		for stripped := true; stripped; {
			stripped = false
			for _, port := range []string{":5060", ":5061"} {
				if p, ok := strings.CutSuffix(host, port); ok && !strings.HasSuffix(p, ":") &&
					(!strings.HasPrefix(p, "[") || strings.HasSuffix(p, "]")) {
					host, stripped = p, true
				}
			}
		}
		if strings.HasPrefix(host, ":") {
			return "" // a port with no host
		}
	}
	if host == "" {
		return ""
	}
	if user == "" {
		return scheme + ":" + host
	}
	return scheme + ":" + user + "@" + host
}

// uriChars reports whether s holds no control character, space, quote or
// angle bracket, none of which a URI carries unescaped.
func uriChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '"' || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// normalizeEscapes decodes %XX escapes of unreserved characters and upper-
// cases the hex of the others, so "%61lice" and "alice" give one key while
// an escaped '@' or ';' keeps its meaning.
func normalizeEscapes(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				c := hi<<4 | lo
				if isUnreserved(c) {
					b.WriteByte(c)
				} else {
					b.WriteByte('%')
					b.WriteByte(upperHex[hi])
					b.WriteByte(upperHex[lo])
				}
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isUnreserved is RFC 3261's unreserved: alphanum and mark.
func isUnreserved(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-_.!~*'()", c) >= 0
}
