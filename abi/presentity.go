package abi

import "strings"

// Presentity returns the canonical form of a presentity's URI,
// "sip:user@host", and whether the URI names one at all. The host reduces
// a request-URI and a REGISTER's To to it, stores the resource under it
// and sends it to modules as Request.Resource; a module compares a
// document's entity with it (sdk.SameResource). Both sides call this one
// function so that they cannot disagree on who a document is about.
//
// A presentity is an address of record, a user at a domain, so two URIs
// name the same one when their user and host do (Kamailio and OpenSIPS
// key a presentity by user and domain alone too):
//   - the schemes sip, sips and pres are alike: a PIDF entity is often
//     pres: where the request-URI is sip:, and a presentity does not change
//     with the security of the transport;
//   - the port, default or not, is dropped unread: it says where a server
//     or a device listens, not who is there, and softphones put the port
//     they registered to into the entity they publish;
//   - the host is compared without case;
//   - the user is compared with case (RFC 3261 §19.1.4), after decoding
//     the %-escapes of unreserved characters ("%61lice" is "alice");
//   - a password, parameters, headers, a display name and angle brackets
//     are ignored.
//
// A URI without a user part names a domain, not a presentity.
func Presentity(uri string) (key string, ok bool) {
	if canonical(uri) {
		return uri, true
	}
	return presentity(uri)
}

// canonical reports whether uri is already "sip:user@host" as Presentity
// gives it, with nothing it would have to decode, lower or cut: a user
// without escapes or a password, a host of lower-case name characters.
// Most URIs a module reduces are (the resource, a watcher's From), and
// one pass over them costs a guest an eighth of the general path
// (RATIONALE.md). What it refuses takes the general path, which gives
// the same answer for what it accepts (FuzzPresentity).
func canonical(uri string) bool {
	rest, ok := strings.CutPrefix(uri, "sip:")
	if !ok {
		return false
	}
	at := strings.IndexByte(rest, '@')
	if at <= 0 || at == len(rest)-1 {
		return false
	}
	for i := 0; i < at; i++ {
		if !canonicalByte[rest[i]].user {
			return false
		}
	}
	for i := at + 1; i < len(rest); i++ {
		if !canonicalByte[rest[i]].host {
			return false
		}
	}
	return true
}

// canonicalByte says which bytes canonical lets through in a user (those
// isUserinfo takes but the escape's '%' and the password's ':') and in a
// host (those hostOf takes, lower case).
var canonicalByte = func() (t [256]struct{ user, host bool }) {
	for c := range 256 {
		b := byte(c)
		t[c].user = b >= 0x80 || isUnreserved(b) || strings.IndexByte("&=+$,;?/", b) >= 0
		t[c].host = 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || strings.IndexByte("-._", b) >= 0
	}
	return t
}()

// presentity is Presentity's general path.
func presentity(uri string) (key string, ok bool) {
	s, ok := addrSpec(uri)
	if !ok {
		return "", false
	}
	scheme, rest, found := strings.Cut(s, ":")
	if !found {
		return "", false
	}
	switch strings.ToLower(scheme) {
	case "sip", "sips", "pres":
	default:
		return "", false
	}

	// The user part may hold ';' and '?' (RFC 3261 user-unreserved) but
	// never an unescaped '@', and neither may a host, so the first '@'
	// ends the userinfo.
	userinfo, hostport, found := strings.Cut(rest, "@")
	if !found || !isUserinfo(userinfo) {
		return "", false
	}
	user, _, _ := strings.Cut(userinfo, ":") // a password is not part of the identity
	// To a fixed point: decoding "%7%30" makes a new "%70" (found by
	// fuzzing); each pass shortens or keeps the string.
	for next := normalizeEscapes(user); next != user; next = normalizeEscapes(user) {
		user = next
	}
	if user == "" {
		return "", false
	}

	if i := strings.IndexAny(hostport, ";?"); i >= 0 {
		hostport = hostport[:i]
	}
	host, ok := hostOf(hostport)
	if !ok {
		return "", false
	}
	if len(s) == len("sip:")+len(user)+len("@")+len(host) &&
		s[:4] == "sip:" && s[4:4+len(user)] == user && s[4+len(user)] == '@' && s[5+len(user):] == host {
		// Already canonical, as most URIs a module compares are: no
		// allocation, which in a Go guest costs more than all the rest.
		return s, true
	}
	return "sip:" + user + "@" + host, true
}

// addrSpec returns the URI of a name-addr ("Alice" <sip:alice@host>;tag=1)
// or of a bare addr-spec. The '<' of a name-addr comes before the scheme's
// ':' or after a quoted display name; a '<' after the ':' is in a bare
// URI's parameters or headers, which are not read (sipgo drops headers it
// cannot parse, "sip:a@b?\x00<": found by FuzzPresentityOf).
func addrSpec(uri string) (string, bool) {
	s := strings.TrimSpace(uri)
	rest, quoted := s, false
	if strings.HasPrefix(s, `"`) {
		// A quoted display name may hold anything, '<' and ':' too.
		end := 1
		for ; end < len(s) && s[end] != '"'; end++ {
			if s[end] == '\\' {
				end++
			}
		}
		if end >= len(s) {
			return "", false
		}
		rest, quoted = s[end+1:], true
	}
	lt := strings.IndexByte(rest, '<')
	if colon := strings.IndexByte(rest, ':'); lt < 0 || !quoted && colon >= 0 && colon < lt {
		return s, !quoted // a display name needs its <addr-spec>
	}
	rest = rest[lt+1:]
	if gt := strings.IndexByte(rest, '>'); gt >= 0 {
		rest = rest[:gt]
	}
	return strings.TrimSpace(rest), true
}

// hostOf returns the host of a URI's hostport, lower case, without the
// port.
func hostOf(hostport string) (string, bool) {
	if addr, ok := strings.CutPrefix(hostport, "["); ok {
		// What follows the ']' is the port, and is not read.
		addr, _, ok = strings.Cut(addr, "]")
		if !ok {
			return "", false
		}
		// Only the characters of an IPv6 address, with at least one
		// ':', lower case. Not netip.ParseAddr, which would give every
		// spelling of an address one form: it costs each module 150 KB
		// of wasm, and a client spells its own address one way.
		if !strings.Contains(addr, ":") {
			return "", false
		}
		for i := 0; i < len(addr); i++ {
			if _, hex := unhex(addr[i]); !hex && addr[i] != ':' && addr[i] != '.' {
				return "", false
			}
		}
		return "[" + strings.ToLower(addr) + "]", true
	}
	host, port, _ := strings.Cut(hostport, ":")
	if strings.IndexByte(port, ':') >= 0 {
		// An IPv6 address without its brackets: refused rather than cut
		// at its first colon into a host and a port.
		return "", false
	}
	if host == "" {
		return "", false
	}
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.':
		case 'A' <= c && c <= 'Z':
		case c == '_':
			// Not in RFC 3261's hostname, but names on private networks
			// (containers, hosts files) carry it.
		default:
			return "", false
		}
	}
	return strings.ToLower(host), true
}

// isUserinfo reports whether s holds only what RFC 3261 allows in a
// user and a password: unreserved characters, escapes, user-unreserved
// characters and the ':' before the password. Bytes above 0x7f are let
// through: some clients send a UTF-8 user part unescaped, and such a byte
// cannot be taken for a delimiter.
func isUserinfo(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isUnreserved(c) && c < 0x80 && strings.IndexByte("%&=+$,;?/:", c) < 0 {
			return false
		}
	}
	return true
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
