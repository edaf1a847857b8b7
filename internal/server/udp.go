package server

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// UDP requests other than INVITE, ACK and CANCEL skip sipgo's transaction
// layer: the read filter (refuseEarly) parses the datagram once, and the
// request goes to a fixed set of workers with a udpTx, which keeps what
// RFC 3261 §17.2.2 needs of a non-INVITE server transaction: the final
// response's bytes and where they went, under the transaction's key,
// until Timer J. sipgo spent a goroutine, a transaction object with its
// timers (about 4.6 KB kept 32 s) and a second parse on each request
// (RATIONALE.md "UDP requests without sipgo's transactions"). INVITE
// stays with sipgo: its transaction (ACK, Timers G and H) is another
// machine, and the server only refuses it.

// udpWorkers is how many requests the workers handle at once. A handler
// blocks while its change waits for the store's group commit and while a
// module call waits for an instance, so the pool must be larger than the
// cores by the number of such waits: enough to fill a commit group.
const udpWorkers = 256

// udpTransactions holds the UDP server transactions and the workers'
// queue.
type udpTransactions struct {
	s      *Server
	queue  chan *udpTx
	timerJ time.Duration

	mu     sync.Mutex
	closed bool // queue closed: the server is stopping
	txs    map[string]*udpTx
	// answered are the transactions answered finally, in buckets of
	// timerJ/udpBuckets by time of answer: a bucket is dropped whole once
	// its youngest entry is timerJ old, with no timer per transaction.
	// An entry is kept timerJ to timerJ*(1+1/udpBuckets).
	answered [udpBuckets + 1][]*udpTx
	cur      int
}

const udpBuckets = 8

// udpTx is one non-INVITE server transaction over UDP. Until its final
// response it holds its request, and a retransmission is absorbed; after,
// what it takes to send that response again to each retransmission.
type udpTx struct {
	l    *udpTransactions
	key  string
	conn net.PacketConn
	dest netip.AddrPort
	req  *sip.Request // while being handled
	// res is the final response as sent, nil until then; or, when code
	// is set, only what follows the part derived from the request, which
	// is built again from the retransmission (derived).
	res    []byte
	code   int
	reason string
	toTag  string
	err    error // of the last send
	gone   bool  // terminated: out of the table
	done   chan struct{}
}

// derived is the start line and the headers that sipgo's
// NewResponseFromRequest derives from req for a response with code,
// reason and To tag (its Vias, From, To, Call-ID, CSeq, Record-Route), as
// sent, or nil when their end is not found. A response keeps only what
// follows them for the retransmissions of its request, which are the same
// bytes (RATIONALE.md "UDP requests without sipgo's transactions").
func derived(req *sip.Request, code int, reason, toTag string) []byte {
	b := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := b.To(); to != nil && toTag != "" {
		to.Params.Add("tag", toTag)
	}
	var buf bytes.Buffer
	buf.Grow(512)
	b.StringWrite(&buf)
	out, ok := bytes.CutSuffix(buf.Bytes(), []byte("Content-Length: 0\r\n\r\n"))
	if !ok {
		return nil
	}
	return out
}

func newUDPTransactions(s *Server, queue int) *udpTransactions {
	return &udpTransactions{s: s, queue: make(chan *udpTx, queue), timerJ: 64 * sip.T1,
		txs: map[string]*udpTx{}}
}

// start runs the workers until close and the sweeper until s.ctx ends.
// A worker waits on the queue alone: with a select on s.ctx too, every
// idle worker would be parked on that one channel as well.
func (l *udpTransactions) start(handle func(*udpTx)) {
	for range udpWorkers {
		l.s.wg.Add(1)
		go func() {
			defer l.s.wg.Done()
			for tx := range l.queue {
				if l.s.ctx.Err() != nil {
					tx.finish() // stopping: what is queued is dropped
					continue
				}
				handle(tx)
			}
		}()
	}
	l.s.wg.Add(1)
	go func() {
		defer l.s.wg.Done()
		t := time.NewTicker(l.timerJ / udpBuckets)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.sweep()
			case <-l.s.ctx.Done():
				return
			}
		}
	}()
}

// close stops the workers once the queue is drained; receive takes no
// more requests.
func (l *udpTransactions) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.queue)
	}
}

// sweep moves to the next bucket, dropping the transactions it held:
// answered udpBuckets ticks ago or more, so at least timerJ.
func (l *udpTransactions) sweep() {
	l.mu.Lock()
	l.cur = (l.cur + 1) % len(l.answered)
	old := l.answered[l.cur]
	for _, tx := range old {
		tx.terminate()
	}
	clear(old) // the array would keep them alive
	l.answered[l.cur] = old[:0]
	l.mu.Unlock()
}

// receive takes a parsed request datagram. It reports false when the
// request is not for a udpTx (no transaction key can be made of it: sipgo
// answers it 400). A retransmission is answered from the table or
// absorbed; a new request is queued, or answered 503 when the queue is
// full (busy).
func (l *udpTransactions) receive(req *sip.Request, conn net.PacketConn, from netip.AddrPort) (ok, busy bool) {
	key, err := sip.ServerTxKeyMake(req)
	if err != nil {
		return false, false
	}
	l.mu.Lock()
	if tx := l.txs[key]; tx != nil {
		res, dest, code, reason, toTag := tx.res, tx.dest, tx.code, tx.reason, tx.toTag
		l.mu.Unlock()
		if res != nil && code != 0 {
			res = append(derived(req, code, reason, toTag), res...)
		}
		if res != nil {
			if _, err := conn.WriteTo(res, net.UDPAddrFromAddrPort(dest)); err != nil {
				l.s.log.Warn("send response", "err", err, "retransmission", true)
			}
		}
		return true, false
	}
	if l.closed {
		l.mu.Unlock()
		return true, false // dropped: the server is stopping
	}
	tx := &udpTx{l: l, key: key, conn: conn, dest: responseAddr(req, from), req: req}
	select {
	case l.queue <- tx:
		l.txs[key] = tx
		l.mu.Unlock()
		return true, false
	default:
		l.mu.Unlock()
		return true, true
	}
}

// responseAddr is where a response to req, received from from over UDP,
// goes (RFC 3261 §18.2.2 and RFC 3581 §4, as sipgo sends them): the
// source address, at the port the top Via names (5060 when it names none)
// or, when the Via asked for rport, at the source port.
func responseAddr(req *sip.Request, from netip.AddrPort) netip.AddrPort {
	v := req.Via()
	if v == nil {
		return from
	}
	if rport, ok := v.Params.Get("rport"); ok && rport == "" {
		return from
	}
	port := v.Port
	if port <= 0 {
		port = int(sip.DefaultPort("udp"))
	}
	return netip.AddrPortFrom(from.Addr(), uint16(port))
}

// finish ends a transaction whose handler returned: one never answered
// finally leaves the table at once, as sipgo terminates it, so a
// retransmission is handled as new.
func (tx *udpTx) finish() {
	l := tx.l
	l.mu.Lock()
	tx.req = nil
	if tx.res == nil {
		tx.terminate()
	}
	l.mu.Unlock()
}

// terminate takes tx out of the table; under l.mu.
func (tx *udpTx) terminate() {
	if tx.gone {
		return
	}
	tx.gone = true
	if tx.l.txs[tx.key] == tx {
		delete(tx.l.txs, tx.key)
	}
	if tx.done != nil {
		close(tx.done)
	}
}

var errAnswered = errors.New("transaction already has its final response")

// Respond sends res to where the request's answers go. A final response
// is kept for the retransmissions of the request: the bytes after the
// part derived from the request, when the handler left that part as
// NewResponseFromRequest made it, else all of them. A second final
// response is an error.
func (tx *udpTx) Respond(res *sip.Response) error {
	var buf bytes.Buffer
	buf.Grow(512)
	res.StringWrite(&buf)
	data := buf.Bytes()
	var kept []byte
	var tag string
	final := res.StatusCode >= 200
	if final {
		if to := res.To(); to != nil {
			tag, _ = to.Params.Get("tag")
		}
		if p := derived(tx.req, res.StatusCode, res.Reason, tag); p != nil && bytes.HasPrefix(data, p) {
			kept = bytes.Clone(data[len(p):]) // the exact size: it is kept timerJ
		} else {
			kept, tag = bytes.Clone(data), ""
		}
	}
	l := tx.l
	l.mu.Lock()
	if tx.res != nil || tx.gone {
		l.mu.Unlock()
		return errAnswered
	}
	if final {
		tx.res = kept
		if len(kept) < len(data) {
			tx.code, tx.reason, tx.toTag = res.StatusCode, res.Reason, strings.Clone(tag)
		}
		l.answered[l.cur] = append(l.answered[l.cur], tx)
	}
	l.mu.Unlock()
	_, err := tx.conn.WriteTo(data, net.UDPAddrFromAddrPort(tx.dest))
	if err != nil {
		l.mu.Lock()
		tx.err = err
		l.mu.Unlock()
	}
	return err
}

// Acks is nil: a non-INVITE transaction has no ACK.
func (tx *udpTx) Acks() <-chan *sip.Request { return nil }

// OnCancel is false: CANCEL has no effect on a non-INVITE request (RFC
// 3261 §9.2), and is answered by sipgo.
func (tx *udpTx) OnCancel(sip.FnTxCancel) bool { return false }

// OnTerminate is not supported: nothing here waits for a server
// transaction to end.
func (tx *udpTx) OnTerminate(sip.FnTxTerminate) bool { return false }

// Terminate drops the transaction: a retransmission is then a new
// request.
func (tx *udpTx) Terminate() {
	tx.l.mu.Lock()
	tx.terminate()
	tx.l.mu.Unlock()
}

// Done is closed when the transaction leaves the table (Terminate, or
// Timer J after its final response).
func (tx *udpTx) Done() <-chan struct{} {
	tx.l.mu.Lock()
	defer tx.l.mu.Unlock()
	if tx.done == nil {
		tx.done = make(chan struct{})
		if tx.gone {
			close(tx.done)
		}
	}
	return tx.done
}

// Err is the error of the last send, if it failed.
func (tx *udpTx) Err() error {
	tx.l.mu.Lock()
	defer tx.l.mu.Unlock()
	return tx.err
}

var _ sip.ServerTransaction = (*udpTx)(nil)

// serveUDP is a worker's turn with one request: the handler of its
// method, as sipgo would have called it.
func (s *Server) serveUDP(tx *udpTx) {
	defer tx.finish()
	h := s.handlers[tx.req.Method]
	if h == nil {
		h = s.noRoute
	}
	h(tx.req, tx)
}

// udpSource is the source of a datagram as sipgo writes it on a request.
func udpSource(a net.Addr) (netip.AddrPort, string) {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ua.String()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap, a.String()
}
