package server

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// The URIs and the headers the server writes again from a request (the
// URIs a subscription keeps, the request-URI a resource is named by, the
// Via, From and To of every answer) are written here, as sipgo writes
// them, but into the caller's buffer: sipgo's String and StringWrite grow
// a builder per URI and per header value, write the parameters into
// another, and parse each host as an IP address to know whether to
// bracket it. A host with a ':' (an IPv6 literal) and a URI sipgo keeps
// raw are left to sipgo. TestURIStringAsSipgo and TestAnswerBytesAsSipgo
// hold the bytes equal over the corpus (RATIONALE.md "Answers written as
// bytes").

// uriString is u.String(), written on the stack and copied once.
func uriString(u *sip.Uri) string {
	var buf [256]byte
	b := bytes.NewBuffer(buf[:0])
	writeURI(b, u)
	return string(b.Bytes())
}

// writeURI writes u as sipgo's Uri.StringWrite does. It hands b to no
// interface, so that uriString's buffer stays on the stack.
func writeURI(b *bytes.Buffer, u *sip.Uri) {
	if u.Raw() != "" || strings.IndexByte(u.Host, ':') >= 0 {
		b.WriteString(u.String())
		return
	}
	if u.Scheme == "" {
		b.WriteString("sip")
	} else {
		b.WriteString(u.Scheme)
	}
	b.WriteByte(':')
	if u.HierarhicalSlashes {
		b.WriteString("//")
	}
	if u.User != "" {
		b.WriteString(u.User)
		if u.Password != "" {
			b.WriteByte(':')
			b.WriteString(u.Password)
		}
		b.WriteByte('@')
	}
	b.WriteString(u.Host)
	writePort(b, u.Port)
	writeParams(b, ';', u.UriParams)
	writeParams(b, '?', u.Headers)
}

// writePort writes ":port", or nothing for a port of 0 or less.
func writePort(b *bytes.Buffer, port int) {
	if port <= 0 {
		return
	}
	var d [24]byte
	b.Write(strconv.AppendInt(append(d[:0], ':'), int64(port), 10))
}

// writeParams writes hp as sipgo's Uri.StringWrite and HeaderParams'
// ToStringWrite do: first the separator lead (';' for parameters, '?' for
// a URI's headers), then each k=v, a value with a space or tab quoted, a
// key alone without '=', after ';' or '&'.
func writeParams(b *bytes.Buffer, lead byte, hp sip.HeaderParams) {
	sep := byte(';')
	if lead == '?' {
		sep = '&'
	}
	for i, kv := range hp {
		if i == 0 {
			b.WriteByte(lead)
		} else {
			b.WriteByte(sep)
		}
		b.WriteString(kv.K)
		switch {
		case strings.ContainsAny(kv.V, " \t"):
			b.WriteString("=\"")
			b.WriteString(kv.V)
			b.WriteByte('"')
		case kv.V != "":
			b.WriteByte('=')
			b.WriteString(kv.V)
		}
	}
}

// writeAddress writes a From or To header line but its CRLF, as sipgo's
// StringWrite does.
func writeAddress(b *bytes.Buffer, name, display string, u *sip.Uri, params sip.HeaderParams) {
	b.WriteString(name)
	b.WriteString(": ")
	if display != "" {
		b.WriteByte('"')
		b.WriteString(display)
		b.WriteString("\" ")
	}
	b.WriteByte('<')
	writeURI(b, u)
	b.WriteByte('>')
	writeParams(b, ';', params)
}

// writeVia writes a Via header line but its CRLF, as sipgo's StringWrite
// does.
func writeVia(b *bytes.Buffer, v *sip.ViaHeader) {
	if strings.IndexByte(v.Host, ':') >= 0 {
		v.StringWrite(b)
		return
	}
	b.WriteString("Via: ")
	b.WriteString(v.ProtocolName)
	b.WriteByte('/')
	b.WriteString(v.ProtocolVersion)
	b.WriteByte('/')
	b.WriteString(v.Transport)
	b.WriteByte(' ')
	b.WriteString(v.Host)
	writePort(b, v.Port)
	writeParams(b, ';', v.Params)
}
