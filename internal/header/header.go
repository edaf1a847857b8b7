// Package header parses and builds the SIP headers that sipgo leaves as
// plain strings: Event, Expires, Accept, Content-Type, SIP-If-Match,
// Warning. It also maps the compact forms sipgo does not (o, u, k), and
// finds a request's headers by name (All, Get). It owns no state and
// sends nothing.
package header

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
)

// Event is a parsed Event header (RFC 6665 §8.2.1).
type Event struct {
	Package string // lower-cased event type, e.g. "presence"
	ID      string // the id parameter, "" if absent
}

// String renders the header value as sent in NOTIFY.
func (e Event) String() string {
	if e.ID == "" {
		return e.Package
	}
	return e.Package + ";id=" + e.ID
}

// ParseEvent parses an Event header value.
func ParseEvent(v string) (Event, error) {
	parts := strings.Split(v, ";")
	pkg := strings.ToLower(strings.TrimSpace(parts[0]))
	if pkg == "" {
		return Event{}, errors.New("empty event type")
	}
	if !isToken(pkg) {
		return Event{}, fmt.Errorf("event type %q is not a token", pkg)
	}
	var ev Event
	ev.Package = pkg
	for _, p := range parts[1:] {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(name), "id") {
			ev.ID = strings.TrimSpace(val)
		}
	}
	return ev, nil
}

// isToken reports whether s is an RFC 3261 token.
func isToken(s string) bool {
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.ContainsRune("-.!%*_+`'~", c):
		default:
			return false
		}
	}
	return s != ""
}

// MaxExpires bounds what we parse; larger values are clamped by policy
// anyway, and this keeps arithmetic on them safe.
const MaxExpires = 1<<31 - 1

// ParseExpires parses a delta-seconds value (Expires, Min-Expires).
func ParseExpires(v string) (int, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, errors.New("empty value")
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a number of seconds", v)
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > MaxExpires {
		return MaxExpires, nil
	}
	return int(n), nil
}

// Expires returns the request's Expires header: ok is false when absent.
func Expires(req *sip.Request) (secs int, ok bool, err error) {
	h := Get(req, "Expires")
	if h == nil {
		return 0, false, nil
	}
	secs, err = ParseExpires(h.Value())
	if err != nil {
		return 0, true, fmt.Errorf("bad Expires: %w", err)
	}
	return secs, true, nil
}

// Accept returns the media types of every Accept header of req, in order.
// A request without Accept returns nil.
func Accept(req *sip.Request) []string {
	var out []string
	for _, h := range All(req, "Accept") {
		for _, v := range strings.Split(h.Value(), ",") {
			if t := abi.MediaType(v); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// ContentType returns the media type of the request's body, "" if none.
func ContentType(req *sip.Request) string {
	if h := req.ContentType(); h != nil {
		return abi.MediaType(h.Value())
	}
	return ""
}

// Warning builds a Warning header (RFC 3261 §20.43) with code 399
// (miscellaneous warning) carrying text, so a client sees why it was
// refused. text may quote the request, bytes the sender chose, so it is
// made a valid quoted-string: at most 200 bytes, valid UTF-8, control
// characters as spaces, a double quote as a single one, and a backslash
// as a slash, since a backslash would quote the character after it (the
// closing quote, at the end of the text).
func Warning(agent, text string) sip.Header {
	return sip.NewHeader("Warning", string(AppendWarning(nil, agent, text)))
}

// AppendWarning appends the value of Warning(agent, text) to b: what the
// read filter writes into its stateless answers, with no header made.
func AppendWarning(b []byte, agent, text string) []byte {
	if len(text) > 200 {
		text = text[:200]
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	b = append(b, "399 "...)
	b = append(b, agent...)
	b = append(b, " \""...)
	for _, r := range text {
		switch {
		case r == '"':
			r = '\''
		case r == '\\':
			r = '/'
		case r < ' ' || r == 0x7f:
			r = ' '
		}
		b = utf8.AppendRune(b, r)
	}
	return append(b, '"')
}

// Parsers returns sipgo's header parsers with the compact forms it lacks
// mapped to their full names: sipgo maps only v, f, t, i, m, l and c, so
// without this GetHeader("Event") is nil for "o: presence".
func Parsers() map[string]sip.HeaderParser {
	m := map[string]sip.HeaderParser{}
	for k, v := range sip.DefaultHeadersParser() {
		m[k] = v // copy: DefaultHeadersParser returns the global map
	}
	rename := func(full string) sip.HeaderParser {
		return func(_ []byte, v string) (sip.Header, error) { return sip.NewHeader(full, v), nil }
	}
	m["o"] = rename("Event")
	m["u"] = rename("Allow-Events")
	m["k"] = rename("Supported")
	return m
}
