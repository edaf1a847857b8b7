package header

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Instance checks a Contact's +sip.instance value, a quoted "<URN>" (RFC
// 5626 §4.1, RFC 5627 §3), and returns it without its quotes. A URN's
// "urn:" and its namespace are case-insensitive (RFC 8141), and so is a
// UUID's hex (RFC 4122), so both are lower-cased: a phone that changes
// the case of its own UUID is still one instance.
func Instance(v string) (string, error) {
	if len(v) < 4 || v[0] != '"' || v[len(v)-1] != '"' || v[1] != '<' || v[len(v)-2] != '>' {
		return "", fmt.Errorf("+sip.instance %s is not a quoted \"<URN>\"", v)
	}
	urn := v[2 : len(v)-2]
	nid, nss, ok := strings.Cut(urn, ":")
	if ok {
		nid, nss, ok = strings.Cut(nss, ":")
	}
	if !ok || !strings.EqualFold(urn[:3], "urn") || nid == "" || nss == "" || strings.ContainsAny(urn, "<>\" \t") {
		return "", fmt.Errorf("+sip.instance %s is not a quoted \"<URN>\"", v)
	}
	nid = strings.ToLower(nid)
	if nid == "uuid" {
		nss = strings.ToLower(nss)
	}
	return "<urn:" + nid + ":" + nss + ">", nil
}

// RegID parses a Contact's reg-id, 1 to 2^31-1 (RFC 5626 §4.2).
func RegID(v string) (uint32, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 || n > 1<<31-1 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, fmt.Errorf("reg-id %q is not 1 to 2147483647", v)
	}
	return uint32(n), nil
}

// Path returns the request's Path values (RFC 3327), one name-addr each,
// in order: the edge proxy's first. A value that does not parse as a
// name-addr is an error.
func Path(req *sip.Request) ([]string, error) {
	var out []string
	for _, h := range All(req, "Path") {
		for _, v := range splitList(h.Value()) {
			var u sip.Uri
			params := sip.NewParams()
			if _, err := sip.ParseAddressValue(v, &u, &params); err != nil || !strings.Contains(v, "<") {
				return nil, fmt.Errorf("bad Path %q: each value is <URI>", v)
			}
			// Kept with the binding: a copy, not a part of the request's
			// headers, which it would keep.
			out = append(out, strings.Clone(v))
		}
	}
	return out, nil
}

// Supported reports whether req lists option tag in a Supported header.
func Supported(req *sip.Request, tag string) bool {
	for _, h := range All(req, "Supported") {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tag) {
				return true
			}
		}
	}
	return false
}

// splitList splits a header value at the commas that separate its
// values, not those inside <...> or a quoted string, and trims each.
func splitList(v string) []string {
	var out []string
	start, angle, quoted := 0, false, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ',' && !angle:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(v[start:]))
}
