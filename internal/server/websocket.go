package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// handshakeTimeout bounds a WebSocket client's TLS handshake and HTTP
// upgrade request, and maxHandshake the request's size: a connection that
// sends nothing, or an endless header, is closed without holding up others.
const (
	handshakeTimeout = 10 * time.Second
	maxHandshake     = 8 << 10
)

// wsListener is the net.Listener handed to sipgo's ServeWS and ServeWSS.
// sipgo upgrades each connection inside its accept loop, without a
// deadline (one idle connection stopped every later client), and answers
// "Sec-WebSocket-Protocol: sip" to any handshake, one that asked for no
// subprotocol or another one included. So each accepted connection is
// vetted here first, in a goroutine of its own with a deadline: the TLS
// handshake for wss, then the HTTP upgrade request, which must offer the
// subprotocol "sip" (RFC 7118 §4.1). One that does not is answered 400 and
// closed; one that does reaches sipgo with its request replayed, and sipgo
// upgrades it.
type wsListener struct {
	net.Listener
	tls    *tls.Config // wss; nil for ws
	closed func(raddr string)

	ready chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
}

func newWSListener(ln net.Listener, conf *tls.Config, closed func(raddr string)) *wsListener {
	l := &wsListener{Listener: ln, tls: conf, closed: closed, ready: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *wsListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.closeWith(err)
			return
		}
		go l.vet(c)
	}
}

// Accept returns the next connection whose handshake offered "sip".
func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		if l.err != nil && !errors.Is(l.err, net.ErrClosed) {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

func (l *wsListener) Close() error { return l.closeWith(nil) }

// closeWith closes l once; cause, the accept error that ended it, is set
// before done closes, so Accept reads it only after it is written.
func (l *wsListener) closeWith(cause error) error {
	var err error
	l.once.Do(func() {
		l.err = cause
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}

// vet reads c's upgrade request and passes c on if it asks for SIP over
// WebSocket.
func (l *wsListener) vet(c net.Conn) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if l.tls != nil {
		tc := tls.Server(c, l.tls)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		c = tc
	}
	head, err := readHead(c)
	if err != nil {
		c.Close()
		return
	}
	if reason := refuseUpgrade(head); reason != "" {
		fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			len(reason), reason)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	fc := &flowConn{Conn: c, replay: head, closed: l.closed}
	select {
	case l.ready <- fc:
	case <-l.done:
		c.Close()
	}
}

// readHead reads up to the end of an HTTP request's header. A WebSocket
// client sends nothing more before the server's answer (RFC 6455 §4.1).
func readHead(c net.Conn) ([]byte, error) {
	buf := make([]byte, 0, 1024)
	chunk := make([]byte, 1024)
	for !bytes.Contains(buf, []byte("\r\n\r\n")) {
		if len(buf) > maxHandshake {
			return nil, errors.New("upgrade request too large")
		}
		n, err := c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// refuseUpgrade says why head is not a handshake for SIP over WebSocket,
// or "" if it is one.
func refuseUpgrade(head []byte) string {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return "not an HTTP request"
	}
	if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		return "this port serves SIP over WebSocket (RFC 7118) only: an upgrade to websocket with the subprotocol sip"
	}
	for _, v := range req.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if strings.TrimSpace(p) == "sip" {
				return ""
			}
		}
	}
	return "the WebSocket subprotocol sip (RFC 7118) is required"
}

// flowConn is a vetted connection: its reads give back the upgrade
// request first, for sipgo to answer, and its close (whoever closes it:
// the peer, the idle timeout, the server's shutdown) ends its flow.
type flowConn struct {
	net.Conn
	replay []byte
	closed func(raddr string)
	once   sync.Once
}

func (c *flowConn) Read(b []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(b, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *flowConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.closed != nil {
			c.closed(c.Conn.RemoteAddr().String())
		}
	})
	return err
}
