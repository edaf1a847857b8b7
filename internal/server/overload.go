package server

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/header"
)

// refuseEarly is sipgo's read filter: it sees each UDP datagram in the
// socket's read loop, before sipgo parses it. A request other than
// INVITE, ACK and CANCEL it takes whole, parsed once here, to a worker
// (udp.go), and a response to a NOTIFY sent without sipgo, read from its
// bytes without a parse, to its transaction (udpnotify.go); sipgo never
// sees them. Two kinds of request are answered
// right there, statelessly (RFC 3261 §8.2.7), and dropped:
//
//   - while the server is over max_in_flight (requests handled and
//     queued, less those waiting for their commit: tooBusy) or the source over requests_per_second_per_source, with
//     503 + Retry-After (for UDP the source's token is taken here, and
//     admit does not take another);
//   - a request sipgo's parser refuses, with 400 (a Content-Length beyond
//     the datagram, a malformed header) or 513 (larger than
//     max_message_bytes, or cut by sipgo's read buffer), where sipgo would
//     drop it unanswered.
//
// Refused in admit only, the 503s came late, past sipp's 500 ms
// retransmission timer, and the retransmissions were more load still
// (RATIONALE.md "Overload"). What it costs: a retransmission of a request
// still being served is refused too, as a stateless server would, so its
// client may see the 503 of a request that then succeeded; and a
// retransmission takes a source's token. TCP and TLS are read as
// streams, not messages, and are left to admit and to sipgo's framing.
func (s *Server) refuseEarly(info sip.TransportReadProps, data []byte) ([]byte, error) {
	if info.Transport != "UDP" {
		return data, nil
	}
	if bytes.HasPrefix(data, []byte("SIP/")) {
		if code, reason, branch, ours, ok := readNotifyResponse(data); ours {
			if ok {
				s.notifies.receive(code, reason, branch)
			}
			return nil, nil
		}
		return data, nil
	}
	method := requestMethod(data)
	if method == "" {
		return data, nil
	}
	c, ok := s.udpConns.Load(info.LocalAddr)
	if !ok {
		return data, nil
	}
	ln := c.(*udpListener)
	conn := ln.conn
	code, reason := s.overloaded(info)
	if code == 0 {
		var req *sip.Request
		req, code, reason = s.parse(data)
		if code == 0 {
			if req.Method == sip.INVITE {
				return data, nil
			}
			from, source := ln.source(info.RemoteAddr)
			req.SetTransport("UDP")
			req.SetSource(source)
			taken, busy := s.udp.receive(req, conn, from)
			if !taken {
				return data, nil
			}
			if !busy {
				return nil, nil
			}
			// Each refusal says which limit refused it, in the Warning
			// and the log, so that an operator (and a bench) can tell a
			// full queue from max_in_flight.
			code, reason = 503, "server busy: the workers' queue is full"
		}
	}
	var res []byte
	switch code {
	case 503:
		_, res = statelessResponse(data, "503 Service Unavailable", s.opt.UserAgent, s.busyTag, reason, "Retry-After: 1")
	case 513:
		_, res = statelessResponse(data, "513 Message Too Large", s.opt.UserAgent, s.busyTag, reason)
	default:
		_, res = statelessResponse(data, "400 Bad Request", s.opt.UserAgent, s.busyTag, reason)
	}
	if res == nil && code == 503 {
		return data, nil // a header missing or doubled: sipgo's to judge
	}
	s.opt.Metrics.Request(method)
	if res == nil {
		// Nothing to address an answer with: dropped, as sipgo would,
		// but logged with its source and under our limit.
		if s.logLimit.allow() {
			s.log.Info("request dropped", "method", method, "reason", reason,
				"source", info.RemoteAddr.String(), "stage", "read")
		}
		return nil, nil
	}
	if _, err := conn.WriteTo(res, info.RemoteAddr); err != nil {
		s.log.Warn("send response", "code", code, "err", err)
	}
	s.opt.Metrics.Response(method, code)
	if s.logLimit.allow() {
		s.log.Info("request refused", "method", method, "code", code, "reason", reason,
			"source", info.RemoteAddr.String(), "stage", "read")
	}
	return nil, nil
}

// overloaded is 503 and why while the server is over max_in_flight or the
// datagram's source over its rate, else 0. It takes the source's token.
func (s *Server) overloaded(info sip.TransportReadProps) (int, string) {
	if why := s.tooBusy(s.inFlight.Load() + int64(len(s.udp.queue)) + 1); why != "" {
		return 503, why
	}
	if s.sources == nil {
		return 0, ""
	}
	host := info.RemoteAddr.String()
	if ua, ok := info.RemoteAddr.(*net.UDPAddr); ok {
		host = ua.IP.String()
	}
	if s.trusted(host) || s.sources.allow(host) {
		// A proxy's requests are accounted to their clients in admit,
		// once their Vias are parsed.
		return 0, ""
	}
	return 503, fmt.Sprintf("more than %d requests a second from %s", s.opt.Limits.RequestsPerSecondPerSource, host)
}

// parse parses the request datagram in data. When sipgo's parser
// refuses it, it returns the answer sipgo would owe it and drops instead,
// and why. A datagram that fills sipgo's read buffer was cut (the socket
// keeps no more of it), so it is over the limit too; its answer is built
// from the headers before the cut.
func (s *Server) parse(data []byte) (*sip.Request, int, string) {
	limit := min(s.parser.MaxMessageLength, int(sip.TransportBufferReadSize)-1)
	if len(data) > limit {
		return nil, 513, fmt.Sprintf("message larger than %d bytes", limit)
	}
	if req := parseRequest(headerParsers, s.parser.MaxMessageLength, data); req != nil {
		return req, 0, ""
	}
	msg, err := s.parser.ParseSIP(data)
	req, _ := msg.(*sip.Request)
	if err == nil && req != nil {
		return req, 0, ""
	}
	if err == nil {
		return nil, 400, "not a request"
	}
	if cl := contentLength(req); cl != nil &&
		(errors.Is(err, sip.ErrParseReadBodyIncomplete) || errors.Is(err, sip.ErrMessageTooLarge)) {
		_, body, _ := bytes.Cut(data, []byte("\r\n\r\n"))
		return nil, 400, fmt.Sprintf("Content-Length %d is larger than the %d bytes of body that came", *cl, len(body))
	}
	// sipgo's error seldom names what it refused: find it.
	line, _, _ := bytes.Cut(data, crlf)
	parts := strings.Split(string(line), " ")
	if len(parts) != 3 {
		return nil, 400, "malformed request line: not a method, a request-URI and a version, each after one space"
	}
	var uri sip.Uri
	if uerr := sip.ParseUri(parts[1], &uri); uerr != nil {
		return nil, 400, fmt.Sprintf("malformed request-URI %s: %v", parts[1], uerr)
	}
	for name, line := range headerLines(data) {
		if _, herr := headerParsers.ParseHeader(nil, line); herr != nil {
			return nil, 400, fmt.Sprintf("malformed %s header: %v", name, herr)
		}
	}
	return nil, 400, "malformed request: " + err.Error()
}

// headerParsers are the parser's: parseRequest's, and to find which
// header sipgo refused.
var headerParsers = sip.HeadersParser(header.Parsers())

// contentLength is req's Content-Length, nil if it has none or req is nil.
func contentLength(req *sip.Request) *sip.ContentLengthHeader {
	if req == nil {
		return nil
	}
	return req.ContentLength()
}

// requestMethod is the method of the request in data, or "" for a
// response, an ACK or CANCEL (never refused so) or no request line.
func requestMethod(data []byte) string {
	eol := bytes.Index(data, crlf)
	if eol <= 0 || bytes.HasPrefix(data, []byte("SIP/")) {
		return ""
	}
	sp := bytes.IndexByte(data[:eol], ' ')
	if sp <= 0 {
		return ""
	}
	// A method the server serves is its constant, not a string made of
	// the datagram for each request.
	switch m := data[:sp]; string(m) {
	case "ACK", "CANCEL":
		return ""
	case string(sip.PUBLISH):
		return string(sip.PUBLISH)
	case string(sip.SUBSCRIBE):
		return string(sip.SUBSCRIBE)
	case string(sip.NOTIFY):
		return string(sip.NOTIFY)
	case string(sip.REGISTER):
		return string(sip.REGISTER)
	case string(sip.OPTIONS):
		return string(sip.OPTIONS)
	default:
		return string(m)
	}
}

// statelessResponse builds the response with status ("503 Service
// Unavailable") to the request in data from its raw headers: the Vias,
// From, To (with a tag if it had none), Call-ID and CSeq as they came
// (folded lines joined), the extra header lines, and a Warning with
// reason. It returns nil for anything requestMethod refuses or a request
// without exactly one From, To, Call-ID and CSeq: there is nothing to
// address an answer with.
func statelessResponse(data []byte, status, agent, tag, reason string, extra ...string) (method string, res []byte) {
	if method = requestMethod(data); method == "" {
		return "", nil
	}
	out := make([]byte, 0, 512)
	out = append(out, "SIP/2.0 "...)
	out = append(out, status...)
	out = append(out, crlf...)
	const via, from, to, callID, cseq = 1, 2, 4, 8, 16
	have := 0
	for name, line := range headerLines(data) {
		var bit int
		switch {
		case header.SameName(name, "Via"), header.SameName(name, "v"):
			bit = via
		case header.SameName(name, "From"), header.SameName(name, "f"):
			bit = from
		case header.SameName(name, "To"), header.SameName(name, "t"):
			bit = to
		case header.SameName(name, "Call-ID"), header.SameName(name, "i"):
			bit = callID
		case header.SameName(name, "CSeq"):
			bit = cseq
		default:
			continue
		}
		if bit != via && have&bit != 0 {
			return "", nil // two of a header there must be one of
		}
		have |= bit
		out = append(out, line...)
		if bit == to && !containsFold(string(line), ";tag=") {
			out = append(out, ";tag="...)
			out = append(out, tag...)
		}
		out = append(out, crlf...)
	}
	if have != via|from|to|callID|cseq {
		return "", nil
	}
	for _, h := range extra {
		out = append(out, h...)
		out = append(out, crlf...)
	}
	out = append(out, "Warning: "...)
	out = header.AppendWarning(out, agent, reason)
	out = append(out, "\r\nContent-Length: 0\r\n\r\n"...)
	return method, out
}

// headerLines yields the header lines of the message in data with their
// names as they came, folded lines joined with a space as sipgo joins them,
// up to the empty line ending the headers or the end of data, whichever
// comes first: a datagram may have been cut, and a line the cut left
// without its CRLF is left out. A line without a colon is skipped.
func headerLines(data []byte) iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		eol := bytes.Index(data, crlf)
		if eol < 0 {
			return
		}
		rest := data[eol+2:]
		for {
			eol = bytes.Index(rest, crlf)
			if eol <= 0 { // the end, or the empty line
				return
			}
			line := rest[:eol]
			rest = rest[eol+2:]
			for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
				next := bytes.Index(rest, crlf)
				if next < 0 {
					break
				}
				// Capped, so append copies: line is data, not to be written.
				base := bytes.TrimRight(line, " \t")
				line = append(base[:len(base):len(base)], ' ')
				line = append(line, bytes.TrimLeft(rest[:next], " \t")...)
				rest = rest[next+2:]
			}
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
				continue
			}
			if !yield(string(bytes.TrimSpace(line[:colon])), line) {
				return
			}
		}
	}
}

var crlf = []byte("\r\n")
