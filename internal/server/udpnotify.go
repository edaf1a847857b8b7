package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A NOTIFY over UDP to an IP address is sent without sipgo's client
// transaction, whose goroutine and timers each NOTIFY paid for: a
// udpNotifies entry keeps the request's bytes under its branch, one
// goroutine for all of them retransmits as Timer E says (RFC 3261
// §17.1.2.2: T1, doubling up to T2; T2 once a provisional came), and the
// read filter hands it its response by branch. Timer F is the caller's
// context (notifyTimeout). A NOTIFY to a host name, and the TCP ones, stay
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
}

type notifyTx struct {
	data     []byte
	dest     *net.UDPAddr
	conn     net.PacketConn
	next     time.Time     // of the next retransmission
	interval time.Duration // Timer E
	res      chan *sip.Response
}

// retransmit runs Timer E of every NOTIFY until ctx ends, on one ticker:
// a retransmission is up to a tick (T1/5) late.
func (n *udpNotifies) retransmit(ctx context.Context, log func(error)) {
	t := time.NewTicker(sip.T1 / 5)
	defer t.Stop()
	var due []*notifyTx
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due = due[:0]
			n.mu.Lock()
			for _, tx := range n.txs {
				if !now.Before(tx.next) {
					tx.interval = min(2*tx.interval, sip.T2)
					tx.next = now.Add(tx.interval)
					due = append(due, tx)
				}
			}
			n.mu.Unlock()
			for _, tx := range due {
				if _, err := tx.conn.WriteTo(tx.data, tx.dest); err != nil {
					log(err)
				}
			}
			clear(due)
		}
	}
}

// do sends req from conn to dest, adding a Via with sentBy and a branch
// of its own, and returns its final response, or ctx's error.
func (n *udpNotifies) do(ctx context.Context, req *sip.Request, conn net.PacketConn, sentBy sip.Addr, dest netip.AddrPort) (*sip.Response, error) {
	branch := notifyBranch + sip.GenerateTagN(16)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: sentBy.Hostname, Port: sentBy.Port, Params: sip.NewParams()}
	via.Params.Add("branch", branch)
	req.PrependHeader(via)
	var buf bytes.Buffer
	req.StringWrite(&buf)
	tx := &notifyTx{data: buf.Bytes(), dest: net.UDPAddrFromAddrPort(dest), conn: conn,
		next: time.Now().Add(sip.T1), interval: sip.T1, res: make(chan *sip.Response, 1)}
	n.mu.Lock()
	if n.txs == nil {
		n.txs = map[string]*notifyTx{}
	}
	n.txs[branch] = tx
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.txs, branch)
		n.mu.Unlock()
	}()
	if _, err := conn.WriteTo(tx.data, tx.dest); err != nil {
		return nil, err
	}
	select {
	case res := <-tx.res:
		return res, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errNotifyTimeout
		}
		return nil, ctx.Err()
	}
}

var errNotifyTimeout = errors.New("transaction timed out (Timer F)")

// receive takes a response to a NOTIFY sent by do. A provisional one only
// slows Timer E to T2; a final one ends the transaction. A response whose
// transaction is over (a retransmitted final response) is dropped.
func (n *udpNotifies) receive(res *sip.Response) {
	v := res.Via()
	if v == nil {
		return
	}
	branch, _ := v.Params.Get("branch")
	n.mu.Lock()
	defer n.mu.Unlock()
	tx := n.txs[branch]
	if tx == nil {
		return
	}
	if res.IsProvisional() {
		tx.interval = sip.T2
		tx.next = time.Now().Add(sip.T2)
		return
	}
	delete(n.txs, branch)
	tx.res <- res
}

// isNotifyResponse reports whether data is a response to one of do's
// NOTIFYs, by the branch of its Via.
func isNotifyResponse(data []byte) bool {
	return bytes.HasPrefix(data, []byte("SIP/2.0 ")) && bytes.Contains(data, []byte("branch="+notifyBranch))
}
