package server

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/maphash"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/header"
)

// UDP requests other than INVITE, ACK and CANCEL skip sipgo's transaction
// layer: the read filter (refuseEarly) parses the datagram once, and the
// request goes to a fixed set of workers with a udpTx. What RFC 3261
// §17.2.2 needs of a non-INVITE server transaction once answered, the
// final response's bytes and where they went for the transaction's key
// until Timer J, is kept as about 100 bytes with no pointer. sipgo spent a goroutine, a transaction object with its
// timers (about 4.6 KB kept 32 s) and a second parse on each request
// (RATIONALE.md "UDP requests without sipgo's transactions"). INVITE
// stays with sipgo: its transaction (ACK, Timers G and H) is another
// machine, and the server only refuses it.

// udpWorkers is how many requests the workers handle at once, besides
// those waiting for their commit. A handler blocks while its change waits
// for the store's group commit and while a module call waits for an
// instance, so the pool is larger than the cores by the number of such
// waits; and while a stall of the disk's flush holds more commits than
// that, one worker more runs for each (grow).
const udpWorkers = 256

// udpTransactions holds the UDP server transactions and the workers'
// queue.
type udpTransactions struct {
	s      *Server
	queue  chan *udpTx
	timerJ time.Duration
	// seeds of the two hashes of a transaction key: the first finds an
	// answered transaction, the second, kept in its record, confirms it.
	seeds [2]maphash.Seed

	handle  func(*udpTx) // set by start, under mu
	workers atomic.Int64 // running: udpWorkers, and one more for each change waiting for its commit

	mu     sync.Mutex
	closed bool                 // queue closed: the server is stopping
	txs    map[[2]uint64]*udpTx // not yet answered finally, by the hashes of their keys
	// answered are the transactions answered finally, in buckets of
	// timerJ/udpBuckets by time of answer: a bucket is dropped whole once
	// its youngest entry is timerJ old, with no timer per transaction.
	// An entry is kept timerJ to timerJ*(1+1/udpBuckets).
	answered [udpBuckets + 1]udpBucket
	cur      int
	sweeps   uint64 // since start: the bucket filled at sweeps s is dropped at s+len(answered)
}

const udpBuckets = 8

// udpBucket keeps the final responses of the transactions answered in
// one timerJ/udpBuckets, for their retransmissions, with no pointer per
// transaction: a record of each (udpAnswer) in chunks of bytes, found by
// the first hash of its key. Neither the maps nor the chunks hold
// pointers, so the garbage collector does not scan them (RATIONALE.md
// "UDP requests without sipgo's transactions").
type udpBucket struct {
	// at finds a record by the low 32 bits of the key's first hash; more
	// by the whole hash, for a key whose 32 bits were taken in at.
	at      map[uint32]udpPos
	more    map[uint64]udpPos
	chunks  [][]byte
	waiting []*udpTx // answered transactions whose Done was asked for
}

// udpPos is where a record starts in its bucket: chunk<<udpChunkBits |
// offset.
type udpPos uint32

// A bucket's chunks are 1<<udpChunkBits bytes, so a record starts within
// those bits; a larger record has a chunk of its own. 2^18 chunks of 16
// KB hold 4 GB of records.
const udpChunkBits = 14

// put keeps rec under h; false when the bucket is full.
func (b *udpBucket) put(h uint64, rec []byte) (udpPos, bool) {
	n := len(b.chunks)
	if n == 0 || cap(b.chunks[n-1])-len(b.chunks[n-1]) < len(rec) {
		if n == 1<<(32-udpChunkBits) {
			return 0, false
		}
		b.chunks = append(b.chunks, make([]byte, 0, max(1<<udpChunkBits, len(rec))))
		n++
	}
	c := &b.chunks[n-1]
	pos := udpPos(n-1)<<udpChunkBits | udpPos(len(*c))
	*c = append(*c, rec...)
	if _, taken := b.at[uint32(h)]; !taken {
		b.at[uint32(h)] = pos
	} else {
		if b.more == nil {
			b.more = map[uint64]udpPos{}
		}
		b.more[h] = pos
	}
	return pos, true
}

// get is the record put under h whose first 8 bytes are check, followed
// by the rest of its chunk, or nil.
func (b *udpBucket) get(h, check uint64) []byte {
	if pos, ok := b.at[uint32(h)]; ok {
		if rec := b.record(pos); binary.LittleEndian.Uint64(rec) == check {
			return rec
		}
	}
	if pos, ok := b.more[h]; ok {
		if rec := b.record(pos); binary.LittleEndian.Uint64(rec) == check {
			return rec
		}
	}
	return nil
}

func (b *udpBucket) record(pos udpPos) []byte {
	return b.chunks[pos>>udpChunkBits][pos&(1<<udpChunkBits-1):]
}

// forget drops the record put at pos under h.
func (b *udpBucket) forget(h uint64, pos udpPos) {
	if p, ok := b.at[uint32(h)]; ok && p == pos {
		delete(b.at, uint32(h))
	} else if p, ok := b.more[h]; ok && p == pos {
		delete(b.more, h)
	}
}

// udpAnswer is what an answered transaction keeps, as a record of bytes:
// the second hash of its key, where the response went, and the response:
// whole when code is 0, else only what follows the part derived from the
// request, which a retransmission builds again with code, reason and
// toTag (derived).
type udpAnswer struct {
	check  uint64
	dest   netip.AddrPort
	code   int
	reason []byte
	toTag  []byte
	res    []byte
}

// udpTagUUID, in a record's code, says its To tag is kept as the 16 bytes
// of a UUID, which sipgo writes as 36 characters.
const udpTagUUID = 1 << 15

// appendTo appends a's record to b: check, then the code in two bytes,
// and each field with its length before it but a UUID To tag.
func (a *udpAnswer) appendTo(b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, a.check)
	var buf [32]byte
	dest, _ := a.dest.AppendBinary(buf[:0])
	b = appendField(b, dest)
	if u, ok := packUUID(a.toTag); ok {
		b = binary.LittleEndian.AppendUint16(b, uint16(a.code)|udpTagUUID)
		b = append(b, u[:]...)
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(a.code))
		b = appendField(b, a.toTag)
	}
	b = appendField(b, a.reason)
	return appendField(b, a.res)
}

func appendField(b, f []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(f))), f...)
}

// readAnswer reads the record at the start of b, written by appendTo.
func readAnswer(b []byte) (a udpAnswer) {
	a.check, b = binary.LittleEndian.Uint64(b), b[8:]
	var dest []byte
	dest, b = readField(b)
	a.dest.UnmarshalBinary(dest) // as MarshalBinary wrote it
	code := binary.LittleEndian.Uint16(b)
	b = b[2:]
	if a.code = int(code &^ udpTagUUID); code&udpTagUUID != 0 {
		a.toTag, b = appendUUID(nil, b[:16]), b[16:]
	} else {
		a.toTag, b = readField(b)
	}
	a.reason, b = readField(b)
	a.res, _ = readField(b)
	return a
}

func readField(b []byte) (f, rest []byte) {
	n, k := binary.Uvarint(b)
	return b[k : k+int(n) : k+int(n)], b[k+int(n):]
}

// packUUID is the 16 bytes of tag when it is a UUID written as
// appendUUID writes it, the form of sipgo's To tags.
func packUUID(tag []byte) (u [16]byte, ok bool) {
	if len(tag) != 36 {
		return u, false
	}
	var h [32]byte
	copy(h[:], tag[:8])
	copy(h[8:], tag[9:13])
	copy(h[12:], tag[14:18])
	copy(h[16:], tag[19:23])
	copy(h[20:], tag[24:])
	if _, err := hex.Decode(u[:], h[:]); err != nil {
		return u, false
	}
	var buf [36]byte
	return u, bytes.Equal(appendUUID(buf[:0], u[:]), tag)
}

// appendUUID appends the 16 bytes of a UUID in lowercase hexadecimal, in
// groups of 8, 4, 4, 4 and 12 digits separated by '-'.
func appendUUID(b, u []byte) []byte {
	for i, n := range [...]int{4, 2, 2, 2, 6} {
		if i > 0 {
			b = append(b, '-')
		}
		b, u = hex.AppendEncode(b, u[:n]), u[n:]
	}
	return b
}

// udpTx is one non-INVITE server transaction over UDP. Until its final
// response it holds its request, and a retransmission is absorbed; after,
// its bucket keeps what it takes to send that response again to each
// retransmission, and the udpTx is the handler's alone.
type udpTx struct {
	l    *udpTransactions
	hash [2]uint64 // of its key (appendTxKey), with l.seeds
	conn net.PacketConn
	dest netip.AddrPort
	req  *sip.Request // while being handled
	err  error        // of the last send
	gone bool         // terminated: out of the table
	done chan struct{}
	// final: answered finally, its record put at pos in l.answered[bucket]
	// when l.sweeps was sweep, kept until the sweep l.sweeps == sweep+len(l.answered).
	final  bool
	bucket int
	sweep  uint64
	pos    udpPos
}

// derived is the start line and the headers that sipgo's
// NewResponseFromRequest derives from req for a final response with code,
// reason and To tag (its Vias, From, To, Call-ID, CSeq, Record-Route) and
// the name of the Content-Length header it writes after them, as sent. A response keeps only what follows
// them for the retransmissions of its request, which are the same bytes
// (RATIONALE.md "UDP requests without sipgo's transactions").
func derived(req *sip.Request, code int, reason, toTag string) []byte {
	b := bytes.NewBuffer(make([]byte, 0, 512))
	writeDerived(b, req, code, reason, toTag)
	return b.Bytes()
}

// writeDerived writes derived(req, code, reason, toTag) into b.
func writeDerived(b *bytes.Buffer, req *sip.Request, code int, reason, toTag string) {
	// Written from req's headers rather than through a sipgo Response:
	// that cloned every header and drew a random To tag only to replace
	// it, for each answer (RATIONALE.md). A test holds the bytes equal.
	var num [20]byte
	b.WriteString(req.SipVersion)
	b.WriteByte(' ')
	b.Write(strconv.AppendInt(num[:0], int64(code), 10))
	b.WriteByte(' ')
	b.WriteString(reason)
	b.WriteString("\r\n")
	line := func(h sip.Header) {
		h.StringWrite(b)
		b.WriteString("\r\n")
	}
	// RFC 3261 §20, Table 3, as sipgo applies it.
	allowedMethod := req.Method != sip.REGISTER && !req.IsAck()
	allowedStatus := (code >= 180 && code < 190) || (code >= 200 && code < 300)
	earlyInvite := req.IsInvite() && code > 100 && code < 200
	// The headers are walked, not gathered with header.All: a slice per
	// answer.
	if allowedMethod && (allowedStatus || earlyInvite) {
		for _, h := range req.Headers() {
			if header.SameName(h.Name(), "Record-Route") {
				line(h)
			}
		}
	}
	vias := 0
	for _, h := range req.Headers() {
		if !header.SameName(h.Name(), "Via") {
			continue
		}
		vias++
		if v, ok := h.(*sip.ViaHeader); ok && vias == 1 {
			if val, exists := v.Params.Get("rport"); exists && val == "" {
				// RFC 3581 §4: the top Via answers with the source.
				v = v.Clone()
				host, port, _ := net.SplitHostPort(req.Source())
				v.Params.Add("rport", port)
				v.Params.Add("received", host)
				h = v
			}
		}
		if v, ok := h.(*sip.ViaHeader); ok {
			writeVia(b, v)
			b.WriteString("\r\n")
		} else {
			line(h)
		}
	}
	if h := req.From(); h != nil {
		writeAddress(b, "From", h.DisplayName, &h.Address, h.Params)
		b.WriteString("\r\n")
	}
	if h := req.To(); h != nil {
		switch tag, has := h.Params.Get("tag"); {
		case !has && toTag != "" && code != 100:
			writeAddress(b, "To", h.DisplayName, &h.Address, h.Params)
			b.WriteString(";tag=") // sipgo appends the tag to the parameters
			b.WriteString(toTag)
		case has && toTag != "" && tag != toTag:
			params := h.Params.Clone()
			params.Add("tag", toTag)
			writeAddress(b, "To", h.DisplayName, &h.Address, params)
		default:
			writeAddress(b, "To", h.DisplayName, &h.Address, h.Params)
		}
		b.WriteString("\r\n")
	}
	if h := req.CallID(); h != nil {
		line(h)
	}
	if h := req.CSeq(); h != nil {
		line(h)
	}
	b.WriteString("Content-Length: ")
}

// newUDPTransactions keeps answered transactions for sipgo's Timer J (64
// T1 unless set otherwise), as its own transactions did.
func newUDPTransactions(s *Server, queue int) *udpTransactions {
	l := &udpTransactions{s: s, queue: make(chan *udpTx, queue), timerJ: sip.Timer_J,
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, txs: map[[2]uint64]*udpTx{}}
	for i := range l.answered {
		l.answered[i].at = map[uint32]udpPos{}
	}
	return l
}

// start runs the workers until close and the sweeper until s.ctx ends.
func (l *udpTransactions) start(handle func(*udpTx)) {
	l.mu.Lock()
	l.handle = handle
	for range udpWorkers {
		l.spawn()
	}
	l.mu.Unlock()
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

// spawn starts a worker, counted in l.workers; under l.mu, while the
// queue is open (so s.wg, which counts the caller, cannot be done).
func (l *udpTransactions) spawn() {
	l.workers.Add(1)
	l.s.wg.Add(1)
	go l.work()
}

// work handles the queue's requests until close, or until the pool is
// larger than it needs (retire). It waits on the queue alone: with a
// select on s.ctx too, every idle worker would be parked on that one
// channel as well.
func (l *udpTransactions) work() {
	defer l.s.wg.Done()
	for tx := range l.queue {
		if l.s.ctx.Err() != nil {
			tx.finish() // stopping: what is queued is dropped
			continue
		}
		l.handle(tx)
		if l.retire() {
			return
		}
	}
	l.workers.Add(-1)
}

// grow starts a worker if fewer than udpWorkers would be left beside the
// committing changes waiting for their commit, so that those waits,
// which need no core, do not leave the queue unserved. Changes outside
// the workers (timers, TCP) count too: a worker more than needed only
// waits on the queue until it retires.
func (l *udpTransactions) grow(committing int64) {
	if l.workers.Load() >= udpWorkers+committing {
		return
	}
	l.mu.Lock()
	if l.handle != nil && !l.closed && l.workers.Load() < udpWorkers+committing {
		l.spawn()
	}
	l.mu.Unlock()
}

// retire reports whether the worker calling it is one more than the
// pool needs now, and if so counts it out.
func (l *udpTransactions) retire() bool {
	for {
		n := l.workers.Load()
		if n <= udpWorkers+l.s.committing.Load() {
			return false
		}
		if l.workers.CompareAndSwap(n, n-1) {
			return true
		}
	}
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
	defer l.mu.Unlock()
	n := len(l.answered[l.cur].at) // the bucket just filled: how many the next may hold
	l.sweeps++
	l.cur = (l.cur + 1) % len(l.answered)
	b := &l.answered[l.cur]
	waiting := b.waiting
	*b = udpBucket{at: make(map[uint32]udpPos, n)}
	for _, tx := range waiting {
		tx.terminate()
	}
}

// find is the record of the answered transaction whose key has hash, or
// nil; under l.mu. Its bytes are never written again, and stay while the
// caller holds them.
func (l *udpTransactions) find(hash [2]uint64) []byte {
	for i := range l.answered {
		if rec := l.answered[i].get(hash[0], hash[1]); rec != nil {
			return rec
		}
	}
	return nil
}

// receive takes a parsed request datagram. It reports false when the
// request is not for a udpTx (no transaction key can be made of it: sipgo
// answers it 400). A retransmission is answered from the table or
// absorbed; a new request is queued, or answered 503 when the queue is
// full (busy).
func (l *udpTransactions) receive(req *sip.Request, conn net.PacketConn, from netip.AddrPort) (ok, busy bool) {
	var buf [256]byte
	key, err := appendTxKey(buf[:0], req)
	if err != nil {
		return false, false
	}
	hash := [2]uint64{maphash.Bytes(l.seeds[0], key), maphash.Bytes(l.seeds[1], key)}
	l.mu.Lock()
	if l.txs[hash] != nil {
		l.mu.Unlock()
		return true, false // absorbed: being handled
	}
	if rec := l.find(hash); rec != nil {
		l.mu.Unlock()
		a := readAnswer(rec)
		res := a.res
		if a.code != 0 {
			res = append(derived(req, a.code, string(a.reason), string(a.toTag)), res...)
		}
		if _, err := writeUDP(conn, res, a.dest); err != nil {
			l.s.log.Warn("send response", "err", err, "retransmission", true)
		}
		return true, false
	}
	if l.closed {
		l.mu.Unlock()
		return true, false // dropped: the server is stopping
	}
	tx := &udpTx{l: l, hash: hash, conn: conn, dest: responseAddr(req, from), req: req}
	select {
	case l.queue <- tx:
		l.txs[hash] = tx
		l.mu.Unlock()
		return true, false
	default:
		l.mu.Unlock()
		return true, true
	}
}

// appendTxKey appends req's server transaction key (RFC 3261 §17.2.3)
// to b, as sipgo's ServerTxKeyMake writes it: for an RFC 3261 branch
// written here, on the caller's stack, where sipgo's builder took four
// allocations per request; any other request is left to sipgo. A
// transaction is known by two hashes of its key, not the key: a table of
// keys would cost the string of each.
func appendTxKey(b []byte, req *sip.Request) ([]byte, error) {
	via, cseq := req.Via(), req.CSeq()
	var branch string
	if via != nil {
		branch, _ = via.Params.Get("branch")
	}
	if cseq == nil || len(branch) <= len(sip.RFC3261BranchMagicCookie) || !strings.HasPrefix(branch, sip.RFC3261BranchMagicCookie) {
		key, err := sip.ServerTxKeyMake(req)
		return append(b, key...), err
	}
	method := cseq.MethodName
	if method == sip.ACK {
		method = sip.INVITE
	}
	port := via.Port
	if port <= 0 {
		port = int(sip.DefaultPort(via.Transport))
	}
	b = append(b, branch...)
	b = append(b, sip.TxSeperator...)
	b = append(b, via.Host...)
	b = append(b, sip.TxSeperator...)
	b = strconv.AppendInt(b, int64(port), 10)
	b = append(b, sip.TxSeperator...)
	return append(b, method...), nil
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
	if !tx.final {
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
	l := tx.l
	if !tx.final {
		if l.txs[tx.hash] == tx {
			delete(l.txs, tx.hash)
		}
	} else if !tx.expired() {
		l.answered[tx.bucket].forget(tx.hash[0], tx.pos)
	}
	if tx.done != nil {
		close(tx.done)
	}
}

// expired reports whether the bucket of an answered tx has been
// dropped; under l.mu.
func (tx *udpTx) expired() bool {
	return tx.final && tx.l.sweeps-tx.sweep >= uint64(len(tx.l.answered))
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
	var tag string
	if to := res.To(); to != nil {
		tag, _ = to.Params.Get("tag")
	}
	n := 0
	if res.StatusCode >= 200 {
		if p := derived(tx.req, res.StatusCode, res.Reason, tag); bytes.HasPrefix(data, p) {
			n = len(p)
		}
	}
	return tx.send(data, res.StatusCode, res.Reason, tag, n)
}

// answer sends answerBytes(tx's request, code, reason, toTag, hdrs): the
// response Respond would send of what NewResponseFromRequest makes, with
// no sipgo Response built, cloned and written only to be read back
// (RATIONALE.md "Answers written as bytes").
func (tx *udpTx) answer(code int, reason, toTag string, hdrs []sip.Header) error {
	data, tag, n := answerBytes(tx.req, code, reason, toTag, hdrs)
	return tx.send(data, code, reason, tag, n)
}

// answerBytes is the response sipgo's NewResponseFromRequest makes of req
// with code and reason, the To tag set to toTag, hdrs appended after its
// Content-Length (as AppendHeader puts them), as sent; the tag its To
// carries, and the length of its first part, derived. A request whose To
// has no tag and toTag "" gets a random UUID, as sipgo draws one.
func answerBytes(req *sip.Request, code int, reason, toTag string, hdrs []sip.Header) (data []byte, tag string, n int) {
	tag = toTag
	if to := req.To(); to != nil && tag == "" && code != 100 {
		var has bool
		if tag, has = to.Params.Get("tag"); !has {
			tag = newUUID()
		}
	}
	b := bytes.NewBuffer(make([]byte, 0, 512))
	writeDerived(b, req, code, reason, tag)
	n = b.Len()
	b.WriteString("0\r\n")
	for _, h := range hdrs {
		h.StringWrite(b)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes(), tag, n
}

// newUUID is a random (version 4) UUID, as sipgo draws a To tag.
func newUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	return string(appendUUID(b[:0], u[:]))
}

// send sends data, a response with code, reason and To tag tag, whose
// first n bytes (none: n is 0) are derived(tx's request, code, reason,
// tag), and keeps a final one for the retransmissions.
func (tx *udpTx) send(data []byte, code int, reason, tag string, n int) error {
	var rec []byte
	final := code >= 200
	if final {
		a := udpAnswer{check: tx.hash[1], dest: tx.dest, res: data}
		if n > 0 {
			a.code, a.reason, a.toTag, a.res = code, []byte(reason), []byte(tag), data[n:]
		}
		var buf [256]byte // the record is copied into its bucket
		rec = a.appendTo(buf[:0])
	}
	l := tx.l
	l.mu.Lock()
	if tx.final || tx.gone {
		l.mu.Unlock()
		return errAnswered
	}
	if final {
		// From the table of those being handled to the bucket, at once:
		// a retransmission finds the one or the other.
		delete(l.txs, tx.hash)
		tx.final, tx.bucket, tx.sweep = true, l.cur, l.sweeps
		var kept bool
		if tx.pos, kept = l.answered[l.cur].put(tx.hash[0], rec); !kept {
			tx.gone = true // a retransmission is a new request
		}
		if tx.done != nil {
			if tx.gone {
				close(tx.done)
			} else {
				l.answered[l.cur].waiting = append(l.answered[l.cur].waiting, tx)
			}
		}
	}
	l.mu.Unlock()
	_, err := writeUDP(tx.conn, data, tx.dest)
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
		switch {
		case tx.gone:
			close(tx.done)
		case tx.expired():
			tx.gone = true
			close(tx.done)
		case tx.final:
			l := tx.l
			l.answered[tx.bucket].waiting = append(l.answered[tx.bucket].waiting, tx)
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

// writeUDP sends b to dest over conn. A *net.UDPConn takes the address
// as it is: WriteTo wants a net.UDPAddr, an allocation per datagram.
func writeUDP(conn net.PacketConn, b []byte, dest netip.AddrPort) (int, error) {
	if uc, ok := conn.(*net.UDPConn); ok {
		return uc.WriteToUDPAddrPort(b, dest)
	}
	return conn.WriteTo(b, net.UDPAddrFromAddrPort(dest))
}

// udpListener is a UDP listener, and the sources of the datagrams it
// read lately as sipgo writes them on a request, by a hash of the
// address: most datagrams come from an address that sent one before (a
// proxy, a phone refreshing), and writing it anew cost three allocations
// per request.
type udpListener struct {
	conn    net.PacketConn
	sources [udpSourceSlots]atomic.Pointer[udpSourceName]
}

// udpSourceSlots is how many sources a listener keeps written: a slot
// is taken over by the next address that hashes to it.
const udpSourceSlots = 256

type udpSourceName struct {
	addr netip.AddrPort
	zone string
	name string
}

// source is where a datagram from a came from, and that as a string.
func (ln *udpListener) source(a net.Addr) (netip.AddrPort, string) {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		ap, _ := netip.ParseAddrPort(a.String())
		return ap, a.String()
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	ip := ap.Addr().As16()
	h := binary.LittleEndian.Uint32(ip[12:]) ^ binary.LittleEndian.Uint32(ip[8:]) ^ uint32(ap.Port())*0x9e3779b1
	slot := &ln.sources[(h^h>>16)%udpSourceSlots]
	if last := slot.Load(); last != nil && last.addr == ap && last.zone == ua.Zone {
		return ap, last.name
	}
	name := ua.String()
	slot.Store(&udpSourceName{addr: ap, zone: ua.Zone, name: name})
	return ap, name
}
