package sdk

import "strings"

// Header is one "Name: value" line of a text body. Name is canonical, as
// net/http writes header names (voice-message and VOICE-MESSAGE are
// Voice-Message), since such names are read without case: compare it
// with ==.
type Header struct {
	Name, Value string
	Line        int // its line in the body, from 1
}

// ReadHeaders reads a text body made of "Name: value" lines, as RFC
// 3842's application/simple-message-summary, the headers of
// message/sipfrag (RFC 3420) and text/parameters write it, into its
// blocks: the runs of lines that empty lines separate, without empty
// blocks. Lines may end in CRLF or LF. Names and values come trimmed of
// white space, names canonical; the module checks what they say. A line that is not
// "Name: value" (no colon, or a name that is empty or has white space in
// it) is refused with a 400 that names it, ready to return from Publish.
func ReadHeaders(body []byte) ([][]Header, error) {
	var blocks [][]Header
	var block []Header
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	for i, line := range lines {
		if line == "" {
			if block != nil {
				blocks, block = append(blocks, block), nil
			}
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if name = strings.TrimSpace(name); !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, Reject(400, "line %d: %q is not a header line (Name: value)", i+1, line)
		}
		block = append(block, Header{Name: canonical(name), Value: strings.TrimSpace(value), Line: i + 1})
	}
	if block != nil {
		blocks = append(blocks, block)
	}
	return blocks, nil
}

// canonical upper-cases the first letter of name and each letter after a
// hyphen, and lower-cases the others; bytes other than ASCII letters stay.
func canonical(name string) string {
	b := []byte(name)
	for i, c := range b {
		upper := i == 0 || b[i-1] == '-'
		switch {
		case upper && 'a' <= c && c <= 'z':
			b[i] = c - ('a' - 'A')
		case !upper && 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
