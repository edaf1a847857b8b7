package auth

import (
	"errors"
	"fmt"
	"strings"
)

// credentials header limits: far above what any client sends, low enough
// that a hostile header costs little.
const (
	maxHeaderLen = 8 << 10
	maxParams    = 32
)

// parseAuthorization splits one Authorization (or Proxy-Authorization)
// value into its scheme and its parameters (RFC 3261 §25.1, RFC 7235 §2.1).
// Parameter names are lower-cased; values are unquoted. Parameters may
// come in any order, quoted or not, with empty list elements between
// commas; a parameter given twice is an error.
func parseAuthorization(v string) (scheme string, params map[string]string, err error) {
	if len(v) > maxHeaderLen {
		return "", nil, fmt.Errorf("credentials longer than %d bytes", maxHeaderLen)
	}
	s := trimLWS(v)
	n := tokenLen(s)
	if n == 0 {
		return "", nil, errors.New("no auth scheme")
	}
	scheme, s = s[:n], s[n:]
	if s != "" && !isLWS(s[0]) {
		return "", nil, fmt.Errorf("bad character %q after auth scheme", s[0])
	}
	params = map[string]string{}
	for {
		s = trimLWS(s)
		for s != "" && s[0] == ',' {
			s = trimLWS(s[1:])
		}
		if s == "" {
			return scheme, params, nil
		}
		n := tokenLen(s)
		if n == 0 {
			return "", nil, fmt.Errorf("bad character %q where a parameter name belongs", s[0])
		}
		name := strings.ToLower(s[:n])
		s = trimLWS(s[n:])
		if s == "" || s[0] != '=' {
			return "", nil, fmt.Errorf("parameter %q has no value", name)
		}
		s = trimLWS(s[1:])
		var val string
		if s != "" && s[0] == '"' {
			val, s, err = quotedString(s)
			if err != nil {
				return "", nil, fmt.Errorf("parameter %q: %w", name, err)
			}
		} else {
			n := valueLen(s)
			if n == 0 {
				return "", nil, fmt.Errorf("parameter %q has no value", name)
			}
			val, s = s[:n], s[n:]
		}
		if _, dup := params[name]; dup {
			return "", nil, fmt.Errorf("parameter %q given twice", name)
		}
		if len(params) == maxParams {
			return "", nil, fmt.Errorf("more than %d parameters", maxParams)
		}
		params[name] = val
		s = trimLWS(s)
		if s != "" && s[0] != ',' {
			return "", nil, fmt.Errorf("bad character %q after parameter %q", s[0], name)
		}
	}
}

// quotedString reads a quoted-string at the start of s, which begins with
// '"', and returns its unescaped contents and the rest of s.
func quotedString(s string) (val, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			i++
			if i == len(s) {
				return "", "", errors.New("unterminated quoted string")
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quoted string")
}

// quote renders s as a quoted-string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// tokenLen is the length of the name (a token, RFC 3261 §25.1) at the
// start of s; it ends at '=' and at anything that cannot be in a token.
func tokenLen(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`,"=;\()<>@:/[]?{}`, c) >= 0 {
			return i
		}
	}
	return len(s)
}

// valueLen is the length of an unquoted value at the start of s. Clients
// leave values unquoted that the grammar wants quoted (a nonce with '/' or
// '=', a uri with ':' and '@'), so only a separator or a quote ends one.
func valueLen(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ',' || c == '"' {
			return i
		}
	}
	return len(s)
}

func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trimLWS(s string) string { return strings.Trim(s, " \t\r\n") }
