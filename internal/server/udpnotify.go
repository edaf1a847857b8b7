package server

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A NOTIFY over UDP to an IP address is sent without sipgo's client
// transaction, whose goroutine and timers each NOTIFY paid for: a
// udpNotifies entry keeps the request's bytes under its branch, one
// goroutine for all of them retransmits as Timer E says (RFC 3261
// §17.1.2.2: T1, doubling up to T2; T2 once a provisional came) and ends
// it at Timer F (notifyTimeout), and the read filter hands it its response
// by branch. A NOTIFY to a host name, and the TCP ones, stay
// with sipgo (its resolver).

// notifyBranch starts the branch of each NOTIFY sent so: the read filter
// knows a response to one by it, even one that comes after its
// transaction ended, and drops it. sipgo's branches start with the magic
// cookie and a dot, so none of its transactions' responses is taken.
const notifyBranch = sip.RFC3261BranchMagicCookie + "-pn."

// udpNotifies are the NOTIFYs over UDP waiting for their final response.
type udpNotifies struct {
	mu  sync.Mutex
	txs map[string]*notifyTx // by branch
	// due are the same by when retransmit is next to look at each
	// (notifyTx.exp), soonest first: a tick reads the few due, not every
	// NOTIFY waiting (RATIONALE.md "NOTIFYs over UDP without sipgo's
	// client transactions"). The heap is the expiries' (timers.go).
	due expiryHeap
	// timerF is notifyTimeout unless a test shortens it.
	timerF time.Duration
	// seq numbers the branches after a random prefix (branch).
	prefix sync.Once
	rand   string
	seq    atomic.Uint64
}

// branch returns a branch for a new NOTIFY: notifyBranch, 64 random bits
// drawn once per server, then a count. RFC 3261 §8.1.1.7 asks only that it
// be unique across space and time, which the random part gives between
// servers and restarts and the count within one; 16 random characters
// drawn for each NOTIFY were 4.5 % of a fan-out's CPU (RATIONALE.md).
func (n *udpNotifies) branch() string {
	n.prefix.Do(func() {
		var b [8]byte
		rand.Read(b[:])
		n.rand = notifyBranch + orderedEncoding.EncodeToString(b[:]) + "."
	})
	var num [13]byte
	seq := strconv.AppendUint(num[:0], n.seq.Add(1), 36)
	var b strings.Builder
	b.Grow(len(n.rand) + len(seq))
	b.WriteString(n.rand)
	b.Write(seq)
	return b.String()
}

type notifyTx struct {
	branch   string
	data     []byte
	dest     netip.AddrPort
	conn     net.PacketConn
	next     time.Time     // of the next retransmission
	timeout  time.Time     // Timer F
	interval time.Duration // Timer E
	res      chan notifyResult
	// exp is its entry in udpNotifies.due, at the sooner of next and
	// timeout.
	exp expiry
}

// expired and due make a notifyTx an expiry's owner, in udpNotifies.due;
// retransmit, not timers, reads that heap, and never calls expired.
func (*notifyTx) expired(*Server) {}
func (tx *notifyTx) due() *expiry { return &tx.exp }

// setNext sets tx's next retransmission at now+interval.
func (tx *notifyTx) setNext(now time.Time, interval time.Duration) {
	tx.interval, tx.next = interval, now.Add(interval)
	tx.exp.at = min(tx.next.UnixNano(), tx.timeout.UnixNano())
}

// schedule sets tx's next retransmission at now+interval and moves it in
// due; under n.mu.
func (n *udpNotifies) schedule(tx *notifyTx, now time.Time, interval time.Duration) {
	tx.setNext(now, interval)
	heap.Fix(&n.due, tx.exp.pos-1)
}

// end takes tx out of the table and of due; under n.mu.
func (n *udpNotifies) end(tx *notifyTx) {
	if n.txs[tx.branch] == tx {
		delete(n.txs, tx.branch)
	}
	if tx.exp.pos > 0 {
		heap.Remove(&n.due, tx.exp.pos-1)
	}
}

// retransmit runs Timer E and Timer F of every NOTIFY until ctx ends, on
// one ticker: each is up to a tick (T1/5) late.
func (n *udpNotifies) retransmit(ctx context.Context, log func(error)) {
	t := time.NewTicker(sip.T1 / 5)
	defer t.Stop()
	var due []*notifyTx
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due = n.tick(now, due[:0])
			for _, tx := range due {
				if _, err := writeUDP(tx.conn, tx.data, tx.dest); err != nil {
					log(err)
				}
			}
			clear(due)
		}
	}
}

// tick ends the NOTIFYs whose Timer F is over at now, and appends to due
// and reschedules those whose Timer E is.
func (n *udpNotifies) tick(now time.Time, due []*notifyTx) []*notifyTx {
	n.mu.Lock()
	defer n.mu.Unlock()
	for len(n.due) > 0 && n.due[0].due().at <= now.UnixNano() {
		tx := n.due[0].(*notifyTx)
		if !now.Before(tx.timeout) {
			n.end(tx)
			tx.res <- notifyResult{} // code 0: no final response
			continue
		}
		n.schedule(tx, now, min(2*tx.interval, sip.T2))
		due = append(due, tx)
	}
	return due
}

// add puts tx, sent at now, in the table and in due.
func (n *udpNotifies) add(tx *notifyTx, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.txs == nil {
		n.txs = map[string]*notifyTx{}
	}
	n.txs[tx.branch] = tx
	tx.setNext(now, sip.T1)
	heap.Push(&n.due, tx)
}

// do sends wire (udpNotify) with cseq from conn to dest, with a Via of
// sentBy and a branch of its own, and returns its final response, or
// errNotifyTimeout at Timer F, or ctx's error.
func (n *udpNotifies) do(ctx context.Context, wire []byte, cseq uint32, conn net.PacketConn, sentBy sip.Addr, dest netip.AddrPort) (notifyResult, error) {
	branch := n.branch()
	host := sentBy.Hostname
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]" // IPv6
	}
	// The Via first, the CSeq last of the headers, as sipgo writes them.
	start := bytes.Index(wire, []byte("\r\n")) + 2
	end := bytes.Index(wire, []byte("\r\n\r\n")) + 2
	data := make([]byte, 0, len(wire)+len(host)+len(branch)+64)
	data = append(data, wire[:start]...)
	data = append(data, "Via: SIP/2.0/UDP "...)
	data = append(data, host...)
	data = append(data, ':')
	data = strconv.AppendInt(data, int64(sentBy.Port), 10)
	data = append(data, ";branch="...)
	data = append(data, branch...)
	data = append(data, "\r\n"...)
	data = append(data, wire[start:end]...)
	data = append(data, "CSeq: "...)
	data = strconv.AppendUint(data, uint64(cseq), 10)
	data = append(data, " NOTIFY\r\n"...)
	data = append(data, wire[end:]...)
	now := time.Now()
	tx := &notifyTx{branch: branch, data: data, dest: dest, conn: conn,
		timeout: now.Add(cmp.Or(n.timerF, notifyTimeout)), res: make(chan notifyResult, 1)}
	n.add(tx, now)
	defer func() {
		n.mu.Lock()
		n.end(tx)
		n.mu.Unlock()
	}()
	if _, err := writeUDP(conn, tx.data, tx.dest); err != nil {
		return notifyResult{}, err
	}
	select {
	case res := <-tx.res:
		if res.code == 0 {
			return res, errNotifyTimeout
		}
		return res, nil
	case <-ctx.Done():
		return notifyResult{}, ctx.Err()
	}
}

var errNotifyTimeout = errors.New("transaction timed out (Timer F)")

// receive takes a response to a NOTIFY sent by do, read by
// readNotifyResponse. A provisional one only slows Timer E to T2; a final
// one ends the transaction. A response whose transaction is over (a
// retransmitted final response) is dropped.
func (n *udpNotifies) receive(code int, reason string, branch []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	tx := n.txs[string(branch)]
	if tx == nil {
		return
	}
	if code < 200 {
		n.schedule(tx, time.Now(), sip.T2)
		return
	}
	n.end(tx)
	tx.res <- notifyResult{code, reason}
}

// notifyResult is what the sender of a NOTIFY reads of its final response.
type notifyResult struct {
	code   int
	reason string
}

// readNotifyResponse reads, without parsing the rest of it, what do's
// transactions need of a response to one of their NOTIFYs: its status
// code and reason, and the branch of its top Via. A full parse of every
// 200 was 4 % of a fan-out's CPU (RATIONALE.md). ours is false for
// anything whose top Via's branch is not one of do's; ok is false for a
// response of ours whose status line does not parse (it is dropped).
func readNotifyResponse(data []byte) (code int, reason string, branch []byte, ours, ok bool) {
	line, rest, found := bytes.Cut(data, []byte("\n"))
	if !found {
		return 0, "", nil, false, false
	}
	branch = topViaBranch(rest)
	if !bytes.HasPrefix(branch, []byte(notifyBranch)) {
		return 0, "", nil, false, false
	}
	code, reason, ok = statusLine(bytes.TrimSuffix(line, []byte("\r")))
	return code, reason, branch, true, ok
}

// statusLine parses "SIP/2.0 SP 3DIGIT SP Reason-Phrase" (RFC 3261 §7.2).
func statusLine(line []byte) (code int, reason string, ok bool) {
	v, rest, _ := bytes.Cut(line, []byte(" "))
	if string(v) != "SIP/2.0" || len(rest) < 4 || rest[3] != ' ' {
		return 0, "", false
	}
	for _, c := range rest[:3] {
		if c < '0' || c > '9' {
			return 0, "", false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 699 {
		return 0, "", false
	}
	switch r := rest[4:]; string(r) {
	case "OK": // the usual answer, without a copy
		reason = "OK"
	default:
		reason = string(r)
	}
	return code, reason, true
}

// topViaBranch returns the branch parameter of the first Via value in
// headers (the message after its start line), nil if there is none. It
// reads "Via" or compact "v", any case, spaces around the colon, the
// equals sign and the semicolons, and a value folded over lines.
func topViaBranch(headers []byte) []byte {
	for len(headers) > 0 {
		var line []byte
		line, headers, _ = bytes.Cut(headers, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return nil // the end of the headers
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		name = bytes.TrimRight(name, " \t")
		if !bytes.EqualFold(name, []byte("Via")) && !bytes.EqualFold(name, []byte("v")) {
			continue
		}
		// Unfold: continuation lines start with a space or a tab.
		for len(headers) > 0 && (headers[0] == ' ' || headers[0] == '\t') {
			var more []byte
			more, headers, _ = bytes.Cut(headers, []byte("\n"))
			value = append(append(value[:len(value):len(value)], ' '), bytes.TrimSuffix(more, []byte("\r"))...)
		}
		value, _, _ = bytes.Cut(value, []byte(","))
		_, params, _ := bytes.Cut(value, []byte(";"))
		for len(params) > 0 {
			var p []byte
			p, params, _ = bytes.Cut(params, []byte(";"))
			k, v, _ := bytes.Cut(p, []byte("="))
			if bytes.EqualFold(bytes.TrimSpace(k), []byte("branch")) {
				return bytes.TrimSpace(v)
			}
		}
		return nil
	}
	return nil
}
