package server

import (
	"bytes"
	"fmt"
	"net"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/header"
)

// refuseEarly is sipgo's read filter: it sees each UDP datagram in the
// socket's read loop, before sipgo parses it, makes a server transaction
// and starts a goroutine for it. A request is answered 503 + Retry-After
// right there, statelessly (RFC 3261 §8.2.7), and dropped, while the
// server is over max_in_flight or when its source is over
// requests_per_second_per_source (for UDP the source's token is taken
// here, and admit does not take another).
//
// admit refuses the same requests, but only once sipgo has done all that
// work for them and the Go scheduler has got round to their goroutines:
// at twice the PUBLISH peak the refusals themselves came late, past sipp's
// 500 ms retransmission timer, and the retransmissions were more load
// still (RATIONALE.md "Overload"). What it costs: a retransmission of a
// request still being served is refused too, as a stateless server would,
// so its client may see the 503 of a request that then succeeded; and a
// retransmission that sipgo would have absorbed takes a source's token.
// TCP and TLS are read as streams, not messages, and are left to admit.
func (s *Server) refuseEarly(info sip.TransportReadProps, data []byte) ([]byte, error) {
	if info.Transport != "UDP" {
		return data, nil
	}
	busy := s.opt.Limits.MaxInFlight > 0 && s.inFlight.Load() >= int64(s.opt.Limits.MaxInFlight)
	if !busy && s.sources == nil || requestMethod(data) == "" {
		return data, nil
	}
	reason := "server busy"
	if !busy {
		host := info.RemoteAddr.String()
		if ua, ok := info.RemoteAddr.(*net.UDPAddr); ok {
			host = ua.IP.String()
		}
		if s.trusted(host) || s.sources.allow(host) {
			// A proxy's requests are accounted to their clients in
			// admit, once their Vias are parsed.
			return data, nil
		}
		reason = fmt.Sprintf("more than %d requests a second from %s", s.opt.Limits.RequestsPerSecondPerSource, host)
	}
	c, ok := s.udpConns.Load(info.LocalAddr.String())
	if !ok {
		return data, nil
	}
	method, res := busyResponse(data, s.opt.UserAgent, s.busyTag, reason)
	if res == nil {
		return data, nil // folded or incomplete headers: sipgo's to judge
	}
	if _, err := c.(net.PacketConn).WriteTo(res, info.RemoteAddr); err != nil {
		s.log.Warn("send response", "code", 503, "err", err)
	}
	s.opt.Metrics.Request(method)
	s.opt.Metrics.Response(method, 503)
	if s.logLimit.allow() {
		s.log.Info("request refused", "method", method, "code", 503, "reason", reason,
			"source", info.RemoteAddr.String(), "stage", "read")
	}
	return nil, nil
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
	switch m := string(data[:sp]); m {
	case "ACK", "CANCEL":
		return ""
	default:
		return m
	}
}

// busyResponse builds the 503 for the request in data from its raw
// headers: the Vias, From, To (with a tag if it had none), Call-ID and
// CSeq as they came, Retry-After and a Warning with reason. It returns nil
// for anything requestMethod refuses, folded header lines or a request
// missing one of those headers: sipgo parses those as usual.
func busyResponse(data []byte, agent, tag, reason string) (method string, res []byte) {
	if method = requestMethod(data); method == "" {
		return "", nil
	}
	eol := bytes.Index(data, crlf)
	out := make([]byte, 0, 512)
	out = append(out, "SIP/2.0 503 Service Unavailable\r\n"...)
	const via, from, to, callID, cseq = 1, 2, 4, 8, 16
	have := 0
	rest := data[eol+2:]
	for {
		eol = bytes.Index(rest, crlf)
		if eol < 0 {
			return "", nil
		}
		line := rest[:eol]
		rest = rest[eol+2:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return "", nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return "", nil
		}
		var bit int
		switch string(bytes.ToLower(bytes.TrimSpace(line[:colon]))) {
		case "via", "v":
			bit = via
		case "from", "f":
			bit = from
		case "to", "t":
			bit = to
		case "call-id", "i":
			bit = callID
		case "cseq":
			bit = cseq
		default:
			continue
		}
		if bit != via && have&bit != 0 {
			return "", nil // two of a header there must be one of
		}
		have |= bit
		out = append(out, line...)
		if bit == to && !bytes.Contains(bytes.ToLower(line[colon:]), []byte(";tag=")) {
			out = append(out, ";tag="...)
			out = append(out, tag...)
		}
		out = append(out, crlf...)
	}
	if have != via|from|to|callID|cseq {
		return "", nil
	}
	out = append(out, "Retry-After: 1\r\n"...)
	w := header.Warning(agent, reason)
	out = append(out, w.Name()+": "+w.Value()+"\r\n"...)
	out = append(out, "Content-Length: 0\r\n\r\n"...)
	return method, out
}

var crlf = []byte("\r\n")
