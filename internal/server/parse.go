package server

import (
	"bytes"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// parseRequest parses the request datagram in data as sipgo's parser
// does with parsers, to the same sip.Request, but with the start line and
// the headers made one string whose parts the header values are: sipgo
// makes a string of each header's value, and of a name it has no parser
// for, about 9 allocations of a PUBLISH's 25 in the parse (RATIONALE.md
// "One string per request's headers"). It returns nil for anything it is
// not sure sipgo reads alike (a folded line, a bare CR, a header or URI
// sipgo refuses, a body shorter than its Content-Length, a response):
// sipgo's parser then has the last word, and its error. So does a
// header with a list of values the parser splits (a Via of two hops).
//
// What it costs: a header value kept after the request keeps every
// header with it, so what outlives a request (a dialog's Call-ID, an
// Event id) is cloned where it is kept.
func parseRequest(parsers sip.HeadersParser, maxLength int, data []byte) *sip.Request {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return nil
	}
	text := string(data[:end+2]) // each line with its CRLF
	eol := strings.IndexByte(text, '\r')
	if text[eol+1] != '\n' {
		return nil
	}
	req := parseRequestLine(text[:eol])
	if req == nil {
		return nil
	}
	var lower [32]byte
	var cl *sip.ContentLengthHeader
	for rest := text[eol+2:]; rest != ""; {
		eol = strings.IndexByte(rest, '\r')
		if rest[eol+1] != '\n' {
			return nil
		}
		line := rest[:eol]
		rest = rest[eol+2:]
		if rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return nil // folded: sipgo joins the lines into a new one
		}
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return nil
		}
		name := strings.TrimSpace(line[:colon])
		value := strings.TrimSpace(line[colon+1:])
		if len(name) > len(lower) {
			return nil
		}
		// sipgo looks the parser up by the lower-case name; the map has
		// both a compact form and its full name.
		key := lower[:len(name)]
		for i := range len(name) {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			key[i] = c
		}
		parse, ok := parsers[string(key)]
		if !ok {
			req.AppendHeader(sip.NewHeader(name, value))
			continue
		}
		h, err := parse(key, value)
		if err != nil {
			// Refused, or a list of values (sipgo's parser splits it at
			// the comma it reports): sipgo's to read.
			return nil
		}
		req.AppendHeader(h)
		if c, ok := h.(*sip.ContentLengthHeader); ok {
			cl = c
		}
	}
	body := data[end+4:]
	size := len(body)
	if cl != nil {
		size = int(*cl)
	}
	total := end + 4
	switch {
	case size == 0:
		return req
	case size > maxLength-total || size > len(body):
		return nil
	}
	req.SetBody(bytes.Clone(body[:size]))
	return req
}

// parseRequestLine is the request of a start line as sipgo reads it, or
// nil for anything else.
func parseRequestLine(line string) *sip.Request {
	method, line, ok := strings.Cut(line, " ")
	if !ok {
		return nil
	}
	uri, version, ok := strings.Cut(line, " ")
	if !ok || len(version) < 3 || strings.IndexByte(version, ' ') >= 0 || !sip.UriIsSIP(version[:3]) {
		return nil
	}
	var recipient sip.Uri
	if err := sip.ParseUri(uri, &recipient); err != nil || recipient.Wildcard {
		return nil
	}
	req := sip.NewRequest(sip.RequestMethod(strings.ToUpper(method)), recipient)
	req.SipVersion = version
	return req
}
