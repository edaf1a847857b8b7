package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/store"
)

// dialog is one subscription, notifier side: its identity, fixed for its
// life and read without locks (the NOTIFY sender reads it), and the few
// fields a refresh or the module changes, under res.mu. It builds its store
// record when one is written (record), as publications do: a whole
// store.Subscription each was ~70 more bytes of every idle subscription,
// and assigning it whole raced with the sender's reads. The NOTIFY queue
// has its own lock so that sending never holds the resource.
type dialog struct {
	// ident is the identity's strings back to back, each after its length
	// (setIdentity): one allocation where eleven strings were 184 bytes of
	// headers, and copies that kept whole parsed header values alive for a
	// tag or a Call-ID. The lengths inside it, not an array of ends beside
	// it: a byte per string set (7 for most dialogs) where the ends were 44
	// bytes of every dialog.
	ident   string
	res     *resource // its key is the event package and presentity
	created int64     // unix nanoseconds

	// Under res.mu.
	// moved is the subscriber's Contact (NOTIFY's request-URI, target)
	// when a refresh changed it, "" while it is the first, in ident: a
	// pointer less for the collector, and a refresh's copy not kept.
	moved  string
	accept *[]string // the SUBSCRIBE's Accept (setAccept)
	state  []byte    // the module's per-watcher state
	// auth is its authorization (status, setStatus): active or pending.
	auth *string
	exp  expiry // exp.at is when the subscription expires
	// hold is set while a coalescing window holds back this watcher's
	// notifications (change.stage); its timer renders at the window's end.
	hold *hold
	// list is, for a list subscription, its own part (list.go); for a
	// back-end dialog, the list subscription it feeds.
	list *listDialog

	qmu sync.Mutex
	// tail is the last NOTIFY queued, whose next is the first: a ring,
	// one pointer where a head and a tail were two. nil when none is.
	tail *notifyJob
	sent int64 // when the last NOTIFY left, unix nanoseconds

	remoteCSeq uint32 // of the last SUBSCRIBE accepted; under res.mu
	cseq       uint32 // last CSeq sent; under qmu
	// reserved is the highest CSeq the store has: CSeqs up to it can be
	// used without a commit. The store never holds less than any CSeq sent.
	reserved uint32
	omits    omits // what ident leaves out; fixed
	gone     bool  // terminated: no longer in res.watchers or Server.dialogs; under res.mu
	cooled   bool  // gone because let go of (coolDialog): its record lives on in the store; under res.mu
	sending  bool  // under qmu
	failed   bool  // under qmu
}

// omits says which identity strings ident leaves out because they are
// read from others.
type omits uint8

const (
	// localFromRes: our URI is the resource's.
	localFromRes omits = 1 << iota
	// localTagInID: the id is the local tag, a dot and a hash (dialogID),
	// so the tag is the id up to its last dot: 16 bytes of every dialog.
	localTagInID
)

// identity is what names a dialog and how it is reached, fixed for its life.
type identity struct {
	id, callID, localTag, remoteTag string
	localURI, remoteURI             string // our From and our To in NOTIFYs
	routeSet                        []string
	transport, source               string // the SUBSCRIBE's: "UDP" or "TCP", ip:port
	instance                        string // its Contact's +sip.instance: how a registration's flow is found
	eventID                         string
	target                          string // the first remote target
}

// The strings of ident, in order: reading one walks the lengths before it,
// so the ones read for every NOTIFY come first, and the ones most dialogs
// leave empty last, where they take no byte at all (setIdentity).
const (
	identID = iota
	identRemoteURI
	identTransport
	identSource
	identCallID
	identRemoteTag
	identTarget
	identLocalTag // empty with localTagInID
	identLocalURI // empty with localFromRes
	identRoutes   // each route its length (uvarint) then itself
	identInstance
	identEventID
	identFields
)

// setIdentity packs f into d, whose res is set; its target is f.target.
func (d *dialog) setIdentity(f identity) {
	d.omits = 0
	if d.res != nil && f.localURI == d.res.key.uri {
		d.omits, f.localURI = localFromRes, ""
	}
	if f.localTag != "" && strings.LastIndexByte(f.id, '.') == len(f.localTag) && strings.HasPrefix(f.id, f.localTag) {
		d.omits, f.localTag = d.omits|localTagInID, ""
	}
	var routes []byte
	for _, r := range f.routeSet {
		routes = binary.AppendUvarint(routes, uint64(len(r)))
		routes = append(routes, r...)
	}
	var parts [identFields]string
	parts[identID], parts[identRemoteURI], parts[identTransport], parts[identSource] = f.id, f.remoteURI, f.transport, f.source
	parts[identCallID], parts[identRemoteTag], parts[identLocalTag], parts[identLocalURI] = f.callID, f.remoteTag, f.localTag, f.localURI
	parts[identRoutes], parts[identInstance], parts[identEventID], parts[identTarget] = string(routes), f.instance, f.eventID, f.target
	last := identFields
	for last > 0 && parts[last-1] == "" {
		last-- // an empty string at the end is read past ident's end
	}
	n := 0
	for _, p := range parts[:last] {
		n += uvarintLen(len(p)) + len(p)
	}
	var b strings.Builder
	b.Grow(n)
	var buf [binary.MaxVarintLen64]byte
	for _, p := range parts[:last] {
		b.Write(binary.AppendUvarint(buf[:0], uint64(len(p))))
		b.WriteString(p)
	}
	d.ident, d.moved = b.String(), ""
}

// field is the i-th string of d.ident, "" past its end.
func (d *dialog) field(i int) string {
	s := d.ident
	for s != "" {
		n, k := uvarint(s)
		if i == 0 {
			return s[k : k+n]
		}
		s = s[k+n:]
		i--
	}
	return ""
}

// uvarint reads a length binary.AppendUvarint wrote at the start of s: its
// value and how many bytes it took.
func uvarint(s string) (n, k int) {
	for shift := 0; k < len(s); shift += 7 {
		b := s[k]
		k++
		n |= int(b&0x7f) << shift
		if b < 0x80 {
			break
		}
	}
	return n, k
}

// uvarintLen is how many bytes binary.AppendUvarint takes for n.
func uvarintLen(n int) int {
	k := 1
	for ; n >= 0x80; n >>= 7 {
		k++
	}
	return k
}

func (d *dialog) id() string        { return d.field(identID) }
func (d *dialog) callID() string    { return d.field(identCallID) }
func (d *dialog) remoteTag() string { return d.field(identRemoteTag) }
func (d *dialog) remoteURI() string { return d.field(identRemoteURI) }
func (d *dialog) transport() string { return d.field(identTransport) }
func (d *dialog) source() string    { return d.field(identSource) }
func (d *dialog) instance() string  { return d.field(identInstance) }
func (d *dialog) eventID() string   { return d.field(identEventID) }

// target is the subscriber's Contact now: NOTIFY's request-URI.
func (d *dialog) target() string {
	if d.moved != "" {
		return d.moved
	}
	return d.field(identTarget)
}

// retarget makes t d's target; r.mu is held.
func (d *dialog) retarget(t string) {
	if t == d.field(identTarget) {
		t = ""
	}
	d.moved = t
}

func (d *dialog) localTag() string {
	if d.omits&localTagInID != 0 {
		id := d.id()
		return id[:strings.LastIndexByte(id, '.')]
	}
	return d.field(identLocalTag)
}

func (d *dialog) localURI() string {
	if d.omits&localFromRes != 0 {
		return d.res.key.uri
	}
	return d.field(identLocalURI)
}

// hasRoutes reports whether d has a route set.
func (d *dialog) hasRoutes() bool { return d.field(identRoutes) != "" }

// routeSet is d's route set, nil when it has none.
func (d *dialog) routeSet() []string {
	var out []string
	for b := d.field(identRoutes); b != ""; {
		n, k := uvarint(b)
		out = append(out, b[k:k+n])
		b = b[k+n:]
	}
	return out
}

// newDialog is the dialog a stored record describes, on resource r.
func newDialog(rec store.Subscription, r *resource) *dialog {
	d := &dialog{created: rec.Created.UnixNano(), res: r, state: rec.State, auth: statusOf(rec.Status), remoteCSeq: rec.RemoteCSeq,
		cseq: rec.LocalCSeq, reserved: rec.LocalCSeq}
	d.setIdentity(identity{id: rec.ID, callID: rec.CallID, localTag: rec.LocalTag, remoteTag: rec.RemoteTag,
		localURI: rec.LocalURI, remoteURI: rec.RemoteURI, routeSet: rec.RouteSet,
		transport: rec.Transport, source: rec.Source, eventID: rec.EventID, target: rec.RemoteTarget})
	d.setAccept(rec.Accept)
	d.exp.at = rec.Expires.UnixNano()
	return d
}

// record is d as the store keeps it. Its LocalCSeq is the first block: a
// store never lowers the CSeq the NOTIFY sender reserved since.
func (d *dialog) record() store.Subscription {
	return store.Subscription{ID: d.id(), CallID: d.callID(), LocalTag: d.localTag(), RemoteTag: d.remoteTag(),
		LocalURI: d.localURI(), RemoteURI: d.remoteURI(), RemoteTarget: d.target(), RouteSet: d.routeSet(),
		Transport: d.transport(), Source: d.source(), Event: d.res.key.event, EventID: d.eventID(),
		Resource: d.res.key.uri, Accept: d.acceptList(), Expires: d.expires(), LocalCSeq: cseqBlock,
		RemoteCSeq: d.remoteCSeq, State: d.state, Status: d.status(), Created: d.createdAt()}
}

// update takes from rec the fields a refresh may change; r.mu is held.
func (d *dialog) update(rec store.Subscription) {
	d.retarget(rec.RemoteTarget)
	d.remoteCSeq = rec.RemoteCSeq
	d.setAccept(rec.Accept)
	d.state, d.auth = append([]byte(nil), rec.State...), statusOf(rec.Status)
}

// statuses are the authorization statuses a dialog points to.
var statuses = [...]string{abi.StatusActive, abi.StatusPending, abi.StatusTerminated, abi.StatusRejected}

// statusOf is status as a dialog keeps it: nil for none, else one of
// statuses when it is one, so that a module's answer, decoded as a string
// of its own, is not 16 bytes of every subscription kept; and a pointer,
// 8 bytes less of every dialog than a string (with the queue's ring, a
// size class smaller).
func statusOf(status string) *string {
	if status == "" {
		return nil
	}
	for i := range statuses {
		if status == statuses[i] {
			return &statuses[i]
		}
	}
	p := new(string) // not &status, which would move every call's to the heap
	*p = status
	return p
}

// status is d's authorization status, "" before its module has said.
func (d *dialog) status() string {
	if d.auth == nil {
		return ""
	}
	return *d.auth
}

func (d *dialog) setStatus(status string) { d.auth = statusOf(status) }

func (d *dialog) event() string        { return d.res.key.event }
func (d *dialog) resource() string     { return d.res.key.uri }
func (d *dialog) expires() time.Time   { return time.Unix(0, d.exp.at) }
func (d *dialog) createdAt() time.Time { return time.Unix(0, d.created) }

// cseqBlock is how many CSeqs a dialog reserves in the store at a time.
// Recording each NOTIFY's CSeq before sending it was one commit per NOTIFY:
// half the commits of a SUBSCRIBE and all of a fan-out's. Reserving a block
// (the first with the subscription itself) makes it one in 32; the price is
// that after a restart a dialog's CSeq jumps by up to 32, which RFC 3261
// allows (a CSeq must rise, not rise by one).
const cseqBlock = 32

// notifyJob is one NOTIFY, built when its state change happened; the CSeq
// is set when it is sent, so CSeq order is send order.
type notifyJob struct {
	// req is the NOTIFY for sipgo's client transactions: over TCP, TLS
	// and WebSocket, and over UDP to a host name, which sipgo resolves.
	// It is nil for one that udpNotifies sends to dest.
	req *sip.Request
	// wire is the NOTIFY as written for UDP, less the Via and CSeq that
	// udpNotifies adds: written once, to measure it and to send it.
	wire  []byte
	dest  netip.AddrPort
	final bool
	at    time.Time // when the change it reports happened
	// big is a NOTIFY moved from UDP to TCP for its size: if the watcher
	// takes no TCP connection, it is sent over UDP after all.
	big  bool
	next *notifyJob // queued after this one
}

// push queues job last; d.qmu is held.
func (d *dialog) push(job *notifyJob) {
	d.pushFront(job)
	d.tail = job
}

// pushFront queues job first again; d.qmu is held.
func (d *dialog) pushFront(job *notifyJob) {
	if d.tail == nil {
		job.next, d.tail = job, job
		return
	}
	job.next, d.tail.next = d.tail.next, job
}

// pop takes the first job queued, nil if none; d.qmu is held.
func (d *dialog) pop() *notifyJob {
	if d.tail == nil {
		return nil
	}
	job := d.tail.next
	if job == d.tail {
		d.tail = nil
	} else {
		d.tail.next = job.next
	}
	job.next = nil
	return job
}

// hold is a coalescing window in progress for one dialog: since when
// changes have been held back, and the timer that renders once it ends.
type hold struct {
	since time.Time
	timer *time.Timer
}

// dialogID names a subscription by its dialog (RFC 3261 §12: Call-ID and
// both tags) in a form fit for URLs, logs and the admin API. Our local tag
// comes first: it is a newOrderedID, so new subscriptions' rows append to
// the store's b-tree rather than each dirtying a random page (RATIONALE.md).
func dialogID(callID, localTag, remoteTag string) string {
	// Hashed and written on the stack: one allocation, the id.
	var buf [256]byte
	h := sha256.Sum256(append(append(append(buf[:0], callID...), 0), remoteTag...))
	return string(hex.AppendEncode(append(append(buf[:0], localTag...), '.'), h[:4]))
}

// hashKey indexes a dialog (Server.dialogs, resource.watchers) or a
// watcher URI (Server.watching): two seeded hashes of its string, so that
// an index entry holds no pointer. A string key was one more pointer per
// entry for the collector to follow on every cycle, and every idle
// subscription has three such entries (RATIONALE.md "Idle subscriptions
// and the collector"). The seeds are random per process, so no one can
// aim two strings at one key, and two differ in 128 bits; a dialog's
// lookup compares its id all the same (Server.dialog, resource.watcher),
// so that even a collision could not hand over another's dialog.
type hashKey [2]uint64

var keySeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func keyOf(s string) hashKey {
	return hashKey{maphash.String(keySeeds[0], s), maphash.String(keySeeds[1], s)}
}

// legacyDialogID is how dialogs were named before store schema 2; their
// stored rows keep it, and an in-dialog SUBSCRIBE still finds them.
func legacyDialogID(callID, localTag, remoteTag string) string {
	h := sha256.Sum256([]byte(callID + "\x00" + localTag + "\x00" + remoteTag))
	return hex.EncodeToString(h[:12])
}

func (d *dialog) watcher(full bool) abi.Watcher {
	return abi.Watcher{ID: d.id(), URI: d.remoteURI(), Accept: d.acceptList(), Full: full,
		State: d.state, Status: d.status()}
}

// subState is the Subscription-State of a live subscription now.
func (d *dialog) subState() string {
	st := d.status()
	if st == "" {
		st = abi.StatusActive
	}
	var buf [64]byte
	return string(strconv.AppendInt(append(append(buf[:0], st...), ";expires="...), d.left(), 10))
}

// left is how many seconds the subscription has to live.
func (d *dialog) left() int64 {
	return max(0, int64(time.Until(d.expires()).Round(time.Second).Seconds()))
}

// enqueue queues a NOTIFY carrying n (nil: no body) for d. Called under
// d.res.mu, so NOTIFYs leave in the order of the changes they report.
func (s *Server) enqueue(d *dialog, subState string, n *abi.Notification, final bool) {
	s.enqueueAt(d, subState, n, final, time.Now())
}

// enqueueAt is enqueue for a change that happened at (the first change a
// coalescing window held back).
func (s *Server) enqueueAt(d *dialog, subState string, n *abi.Notification, final bool, at time.Time) {
	job := s.buildNotify(d, subState, n)
	job.final, job.at = final, at
	d.qmu.Lock()
	defer d.qmu.Unlock()
	if d.failed {
		return
	}
	d.push(job)
	if !d.sending {
		d.sending = true
		s.wg.Add(1)
		go s.sendLoop(d)
	}
}

// hold reports whether a notification for d is to wait for the end of
// its package's coalescing window (RFC 3856 §6.10): a window is in
// progress, or d's last NOTIFY left less than a window ago, or one is
// still queued. r.mu is held.
func (s *Server) hold(d *dialog) bool {
	w := d.res.pkg.mod.Coalesce(d.event())
	if w <= 0 {
		return false
	}
	if d.hold != nil {
		return true
	}
	d.qmu.Lock()
	sent, busy := d.sent, d.tail != nil
	d.qmu.Unlock()
	return busy || time.Since(time.Unix(0, sent)) < w
}

// holdUntilWindow starts d's coalescing window if none is in progress: at
// its end (a window after d's last NOTIFY) d is rendered once, from what
// it was last sent, and that one NOTIFY carries the burst. Each held
// rendering was dropped with its per-watcher state, so the versions a
// module counts stay consecutive. r.mu is held.
func (s *Server) holdUntilWindow(d *dialog) {
	s.opt.Metrics.NotifyCoalesced(d.event())
	if d.hold != nil {
		return
	}
	w := d.res.pkg.mod.Coalesce(d.event())
	d.qmu.Lock()
	wait := time.Until(time.Unix(0, d.sent).Add(w))
	d.qmu.Unlock()
	if wait <= 0 {
		wait = w // the previous NOTIFY is still queued: a window from now
	}
	h := &hold{since: time.Now()}
	h.timer = time.AfterFunc(wait, func() { s.endHold(d, h) })
	d.hold = h
}

// endHold renders d at the end of its coalescing window and sends it.
func (s *Server) endHold(d *dialog, h *hold) {
	// The window's timer is not one of s.timers: counted in s.wg, its
	// rendering either runs before Close waits or not at all, and never
	// starts a NOTIFY sender (s.wg.Add) while Close waits.
	if !s.busy() {
		return
	}
	defer s.wg.Done()
	r := d.res
	s.lock(r)
	defer s.release(r)
	if d.hold != h || d.gone || s.ctx.Err() != nil {
		return
	}
	d.hold = nil
	c := s.newChange()
	c.noHold, c.since = true, h.since
	_, err := c.propose(r, abi.Request{Op: abi.OpRender, Watchers: []abi.Watcher{d.watcher(false)}})
	if err == nil {
		err = c.run()
	}
	if err != nil {
		s.log.Warn("coalesced NOTIFY not sent: the watcher gets the state with the next change",
			"resource", r.key.uri, "watcher", d.remoteURI(), "err", err)
	}
}

// buildNotify builds an in-dialog NOTIFY (RFC 6665 §4.2.1, RFC 3261
// §12.2.1): request-URI the subscriber's Contact, Route from the route set,
// From/To the dialog's, our own CSeq space. One over UDP to an IP address
// is only written (udpNotify); the others are sipgo requests.
func (s *Server) buildNotify(d *dialog, subState string, n *abi.Notification) *notifyJob {
	job := &notifyJob{}
	transport := strings.ToLower(d.transport())
	if transport == "udp" {
		job.wire = s.udpNotify(d, subState, n)
		if len(job.wire)+udpViaAllowance > udpMaxMessage {
			// RFC 3261 §18.1.1: a request within 200 bytes of the path
			// MTU (1300 bytes when it is unknown) goes over a
			// congestion-controlled transport.
			transport, job.big = "tcp", true
		} else if dest, ok := udpDestination(d); ok && s.udpConn != nil {
			job.dest = dest
			return job
		}
	}
	job.req = s.notifyRequest(d, subState, n, transport)
	return job
}

// notifyRequest is buildNotify's sipgo request, over transport.
func (s *Server) notifyRequest(d *dialog, subState string, n *abi.Notification, transport string) *sip.Request {
	var target sip.Uri
	if err := sip.ParseUri(d.target(), &target); err != nil {
		s.log.Error("stored remote target does not parse", "target", d.target(), "err", err)
	}
	req := sip.NewRequest(sip.NOTIFY, target)
	for _, r := range d.routeSet() {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	var local, remote sip.Uri
	sip.ParseUri(d.localURI(), &local)
	sip.ParseUri(d.remoteURI(), &remote)
	from := &sip.FromHeader{Address: local, Params: sip.NewParams()}
	from.Params.Add("tag", d.localTag())
	to := &sip.ToHeader{Address: remote, Params: sip.NewParams()}
	to.Params.Add("tag", d.remoteTag())
	callID := sip.CallIDHeader(d.callID())
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&maxFwd)
	if c, ok := s.contact[strings.ToLower(d.transport())]; ok {
		req.AppendHeader(&sip.ContactHeader{Address: c})
	}
	req.AppendHeader(sip.NewHeader("Event", d.eventValue()))
	req.AppendHeader(sip.NewHeader("Subscription-State", subState))
	if n != nil && n.ContentType != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", n.ContentType))
		req.SetBody(append([]byte(nil), n.Body...))
	} else {
		req.SetBody(nil) // Content-Length: 0, required on TCP
	}
	if transport == strings.ToLower(d.transport()) {
		req.SetTransport(d.transport())
	} else {
		req.SetTransport(strings.ToUpper(transport)) // moved for its size
	}
	if transport == "udp" {
		// From the listening socket: sipgo otherwise opens an ephemeral
		// socket per destination and keeps it open.
		req.Laddr = s.udpAddr
	} else if d.overWebSocket() {
		// A WebSocket peer (a browser) accepts no connection: whatever its
		// Contact and route set say, it is reached over its own connection
		// or not at all (sendLoop checks it is still open).
		req.SetDestination(d.source())
	} else if !d.hasRoutes() && d.source() != "" {
		// Back over the connection the SUBSCRIBE came in on, while it is
		// open: the Contact of a client behind NAT is often unreachable.
		if c, err := s.ua.TransportLayer().GetConnection(transport, d.source()); err == nil && c != nil {
			c.TryClose() // GetConnection took a reference
			req.SetDestination(d.source())
		} else if src := s.registeredFlow(d, transport); src != "" {
			// Gone, but the subscriber registered over a connection
			// that is open: the same reasons hold for that one.
			req.SetDestination(src)
		}
	}
	return req
}

// eventValue is the Event header of d's NOTIFYs.
func (d *dialog) eventValue() string {
	if d.eventID() != "" {
		return d.event() + ";id=" + d.eventID()
	}
	return d.event()
}

// udpNotify writes d's NOTIFY for UDP, less the Via and CSeq udpNotifies
// adds: the bytes sipgo writes for notifyRequest's request (a test holds
// the two equal), without building one. In a fan-out the NOTIFYs are most
// of the work, and building each as a sipgo request (three URIs parsed,
// a dozen header objects) was a fifth of it (RATIONALE.md).
func (s *Server) udpNotify(d *dialog, subState string, n *abi.Notification) []byte {
	var ctype string
	var body []byte
	if n != nil && n.ContentType != "" {
		ctype, body = n.ContentType, n.Body
	}
	size := 200 + len(d.target()) + len(d.localURI()) + len(d.localTag()) + len(d.remoteURI()) + len(d.remoteTag()) +
		len(d.callID()) + len(s.udpContact) + len(d.event()) + len(d.eventID()) + len(subState) + len(ctype) + len(body)
	routes := d.routeSet()
	for _, r := range routes {
		size += len(r) + 9
	}
	b := make([]byte, 0, size)
	b = append(append(append(b, "NOTIFY "...), d.target()...), " SIP/2.0\r\n"...)
	for _, r := range routes {
		b = append(append(append(b, "Route: "...), r...), "\r\n"...)
	}
	b = append(append(append(append(append(b, "From: <"...), d.localURI()...), ">;tag="...), d.localTag()...), "\r\n"...)
	b = append(append(append(append(append(b, "To: <"...), d.remoteURI()...), ">;tag="...), d.remoteTag()...), "\r\n"...)
	b = append(append(append(b, "Call-ID: "...), d.callID()...), "\r\nMax-Forwards: 70\r\n"...)
	b = append(b, s.udpContact...)
	b = append(append(b, "Event: "...), d.event()...)
	if d.eventID() != "" {
		b = append(append(b, ";id="...), d.eventID()...)
	}
	b = append(append(append(b, "\r\nSubscription-State: "...), subState...), "\r\n"...)
	if ctype != "" {
		b = append(append(append(b, "Content-Type: "...), ctype...), "\r\n"...)
	}
	b = strconv.AppendInt(append(b, "Content-Length: "...), int64(len(body)), 10)
	return append(append(b, "\r\n\r\n"...), body...)
}

// udpDestination is where d's NOTIFYs go over UDP (RFC 3261 §8.1.2, loose
// routing: the first Route's URI, else the request-URI), if that is an IP
// address; a host name is left to sipgo, which resolves it.
func udpDestination(d *dialog) (netip.AddrPort, bool) {
	var u sip.Uri
	if routes := d.routeSet(); len(routes) > 0 {
		if _, err := sip.ParseAddressValue(routes[0], &u, nil); err != nil {
			return netip.AddrPort{}, false
		}
	} else if err := sip.ParseUri(d.target(), &u); err != nil {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(u.Host, "["), "]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := u.Port
	if port == 0 {
		port = sip.DefaultPort("udp")
	}
	return netip.AddrPortFrom(ip, uint16(port)), true
}

// udpMaxMessage is RFC 3261 §18.1.1's limit for UDP without a known path
// MTU; udpViaAllowance covers the Via and CSeq added when the NOTIFY is sent.
const (
	udpMaxMessage   = 1300
	udpViaAllowance = 120
)

func init() {
	// buildNotify decides when a NOTIFY is too big for UDP; one it sends
	// over UDP after all (the watcher takes no TCP connection, RFC 3261
	// §18.1.1) sipgo must not refuse at its own 1,300-byte limit.
	sip.UDPMTUSize = 65535
}

// errLeaseEnding holds a NOTIFY back while this node's lease is near its
// end and not renewed.
var errLeaseEnding = errors.New("lease ending")

// notifyTimeout bounds one NOTIFY transaction: 64*T1, the time Timer F
// gives a non-INVITE transaction.
const notifyTimeout = 32 * time.Second

// notifyDo sends job's NOTIFY with cseq and returns its final response,
// within notifyTimeout: over UDP to an IP address as a udpNotifies
// transaction (whose Timer F is its own, no context and timer per
// NOTIFY), else with sipgo's client transaction.
func (s *Server) notifyDo(job *notifyJob, cseq uint32) (notifyResult, error) {
	if job.dest.IsValid() {
		return s.notifies.do(s.ctx, job.wire, cseq, s.udpConn, sip.Addr{Hostname: s.viaHost, Port: s.udpAddr.Port}, job.dest)
	}
	if job.req.CSeq() == nil {
		job.req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.NOTIFY})
	}
	ctx, cancel := context.WithTimeout(s.ctx, notifyTimeout)
	defer cancel()
	res, err := s.cli.Do(ctx, job.req)
	if err != nil {
		return notifyResult{}, err
	}
	return notifyResult{res.StatusCode, res.Reason}, nil
}

// sendLoop sends d's queued NOTIFYs one at a time, in order. A NOTIFY that
// fails (timeout, transport error, any non-2xx final answer) ends the
// subscription, as RFC 6665 §4.2.2 asks.
func (s *Server) sendLoop(d *dialog) {
	defer s.wg.Done()
	for {
		d.qmu.Lock()
		if d.tail == nil || d.failed || s.ctx.Err() != nil {
			d.tail = nil
			d.sending = false
			d.qmu.Unlock()
			return
		}
		job := d.pop()
		d.cseq++
		cseq := d.cseq
		d.qmu.Unlock()

		// Reserved before use, so a crash can never reuse a CSeq. A final
		// NOTIFY reserves too: its row may outlive it if the server stops
		// before the deletion commits. While the store refuses, or this
		// node's lease is near its end (lease.go), nothing is sent: the
		// job goes back to the head of the queue and waits. A dialog
		// another node owns now is dropped unsent.
		var err error
		if !s.leased() {
			err = errLeaseEnding
		} else if cseq > d.reserved {
			c := s.newChange()
			c.batch.NotifyCSeqs = []store.NotifyCSeq{{ID: d.id(), CSeq: cseq + cseqBlock - 1}}
			if err = c.commit(); err == nil {
				d.reserved = cseq + cseqBlock - 1
			}
		}
		if errors.Is(err, store.ErrFenced) {
			s.abandon(d)
			continue
		}
		if err != nil {
			d.qmu.Lock()
			d.cseq--
			d.pushFront(job)
			d.qmu.Unlock()
			select {
			case <-time.After(reserveRetry):
			case <-s.ctx.Done():
			}
			continue
		}
		d.qmu.Lock()
		d.sent = time.Now().UnixNano()
		d.qmu.Unlock()
		var res notifyResult
		err = s.unreachable(d)
		if err == nil {
			res, err = s.notifyDo(job, cseq)
		}
		if err != nil && job.big && refused(err) {
			// RFC 3261 §18.1.1: a request moved to TCP for its size is
			// sent over UDP when the connection is refused or reset.
			if dest, ok := udpDestination(d); ok && s.udpConn != nil {
				job.dest = dest
			} else {
				job.req.RemoveHeader("Via")
				job.req.RemoveHeader("CSeq")
				job.req.SetTransport("UDP")
				job.req.SetDestination("")
				job.req.Laddr = s.udpAddr
			}
			res, err = s.notifyDo(job, cseq)
		}
		ok := err == nil && res.code >= 200 && res.code < 300
		s.opt.Metrics.Notify(d.event(), ok, job.at)
		if ok {
			continue
		}
		reason := "timeout"
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			reason = err.Error()
		} else {
			reason = fmt.Sprintf("%d %s", res.code, res.reason)
		}
		s.log.Info("NOTIFY failed, subscription ended", "resource", d.resource(),
			"watcher", d.remoteURI(), "cseq", cseq, "reason", reason)
		d.qmu.Lock()
		d.failed = true
		d.qmu.Unlock()
		if !job.final {
			s.drop(d)
		}
	}
}

// wsConn is a WebSocket connection: its transport ("ws" or "wss") and the
// peer's address.
type wsConn struct{ transport, source string }

// overWebSocket reports whether d came over a WebSocket connection, the only
// way to reach it.
func (d *dialog) overWebSocket() bool {
	return strings.EqualFold(d.transport(), "ws") || strings.EqualFold(d.transport(), "wss")
}

func (d *dialog) wsConn() wsConn { return wsConn{strings.ToLower(d.transport()), d.source()} }

// unreachable says why d cannot be sent a request now, without dialling:
// its WebSocket connection is closed, or, with no connection of its own
// and no route set, its Contact's host ends in .invalid, a name RFC 7118
// §5 has clients make up because nobody can connect to them.
func (s *Server) unreachable(d *dialog) error {
	if strings.EqualFold(d.transport(), "udp") {
		// No connection to look for: a UDP NOTIFY goes to the Contact
		// (or the route), never back to the source. Once per NOTIFY,
		// the lookup and its lower-cased copy were a tenth of a fan-out.
		if !d.hasRoutes() && invalidHost(d.target()) {
			return fmt.Errorf("its Contact %s cannot be connected to (.invalid)", d.target())
		}
		return nil
	}
	f := d.wsConn()
	open := false
	if d.source() != "" {
		if c, err := s.ua.TransportLayer().GetConnection(f.transport, d.source()); err == nil && c != nil {
			c.TryClose() // GetConnection took a reference
			open = true
		}
	}
	switch {
	case open:
		return nil
	case d.overWebSocket():
		return fmt.Errorf("its %s connection from %s is closed", strings.ToUpper(f.transport), d.source())
	case !d.hasRoutes() && invalidHost(d.target()):
		return fmt.Errorf("its Contact %s cannot be connected to (.invalid) and its connection is closed", d.target())
	}
	return nil
}

// invalidHost reports whether the host of uri ends in .invalid (RFC 2606):
// such a host is never dialled.
func invalidHost(uri string) bool {
	if !containsFold(uri, "invalid") {
		return false // the common case, without parsing
	}
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return false
	}
	h := strings.TrimSuffix(strings.ToLower(u.Host), ".")
	return h == "invalid" || strings.HasSuffix(h, ".invalid")
}

// containsFold reports whether s holds sub, ASCII case ignored.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// wsClosed ends the subscriptions that came over a WebSocket connection
// now closed: nothing can reach them any more (RATIONALE.md). A server
// shutting down ends none: the store keeps them, and after the restart
// their first NOTIFY finds no connection and ends them.
func (s *Server) wsClosed(transport, source string) {
	if s.ctx.Err() != nil {
		return
	}
	f := wsConn{transport, source}
	s.mu.Lock()
	ds := s.wsDialogs[f]
	delete(s.wsDialogs, f)
	s.mu.Unlock()
	if len(ds) == 0 {
		return
	}
	s.log.Info("WebSocket connection closed, its subscriptions ended", "transport", transport,
		"source", source, "subscriptions", len(ds))
	for d := range ds {
		d.qmu.Lock()
		d.failed = true // nothing queued is sent; a store failure retries the drop (expire)
		d.qmu.Unlock()
		s.drop(d)
	}
}

// refused reports a connection refused or reset: nothing listens there.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// reserveRetry is how long a dialog's NOTIFYs wait before trying again to
// reserve CSeqs in a store that refused.
const reserveRetry = time.Second

// drop removes a subscription whose subscriber is gone, without a final
// NOTIFY (there is nobody to send it to). If the store refuses, d stays,
// silent, and is dropped again later: its row must not come back after a
// restart.
func (s *Server) drop(d *dialog) {
	if d.isList() {
		if err := s.dropList(d, false, false, "giveup"); err != nil {
			s.timers.arm(d, time.Now().Add(retryExpiry))
		}
		return
	}
	r := d.res
	s.lock(r)
	defer s.release(r)
	if d.gone {
		return
	}
	c := s.newChange()
	c.batch.DeleteSubscriptions = []string{d.id()}
	c.then(func() { s.forget(d) })
	c.watcherEvent(d, abi.StatusTerminated, "giveup")
	if err := c.run(); err != nil {
		s.timers.arm(d, time.Now().Add(retryExpiry))
	}
}

// link adds d to the dialog index and the per-watcher count (d is already
// among its resource's watchers); r.mu is held.
func (s *Server) link(d *dialog) {
	s.mu.Lock()
	s.dialogs[keyOf(d.id())] = d
	s.watching[keyOf(d.remoteURI())]++
	if d.overWebSocket() {
		f := d.wsConn()
		if s.wsDialogs[f] == nil {
			s.wsDialogs[f] = map[*dialog]struct{}{}
		}
		s.wsDialogs[f][d] = struct{}{}
	}
	s.mu.Unlock()
	s.opt.Metrics.Subscriptions(d.event(), 1)
	if s.opt.Watch != nil {
		s.opt.Watch.Watch(d.event(), d.resource())
	}
	s.noteHeld(d, time.Now().UnixNano())
}

// forget unlinks d from its resource and the indexes; r.mu is held.
func (s *Server) forget(d *dialog) {
	s.opt.Metrics.Subscriptions(d.event(), -1)
	if s.opt.Watch != nil {
		s.opt.Watch.Unwatch(d.event(), d.resource())
	}
	d.gone = true
	if d.hold != nil {
		d.hold.timer.Stop()
		d.hold = nil
	}
	s.timers.stop(d)
	d.res.removeWatcher(d)
	s.mu.Lock()
	delete(s.dialogs, keyOf(d.id()))
	if w := keyOf(d.remoteURI()); s.watching[w] <= 1 {
		delete(s.watching, w)
	} else {
		s.watching[w]--
	}
	if ds := s.wsDialogs[d.wsConn()]; ds != nil {
		if delete(ds, d); len(ds) == 0 {
			delete(s.wsDialogs, d.wsConn())
		}
	}
	s.mu.Unlock()
}

func (s *Server) watchingCount(watcher string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watching[keyOf(watcher)]
}

// dialog is the live dialog with id, nil if none; s.mu is held.
func (s *Server) dialog(id string) *dialog {
	if d := s.dialogs[keyOf(id)]; d != nil && d.id() == id {
		return d
	}
	return nil
}

// armTimer (re)starts d's expiry timer for at; r.mu is held.
func (s *Server) armTimer(d *dialog, at time.Time) {
	s.timers.arm(d, at)
}

func (d *dialog) expired(s *Server) { s.expire(d) }
func (d *dialog) due() *expiry      { return &d.exp }

// expire ends a subscription whose time is up: a final NOTIFY with the
// current state and "terminated;reason=timeout". A subscription whose
// NOTIFY failed is dropped (a retry of a deletion the store refused).
// While the store refuses, the subscription stays and is tried again.
func (s *Server) expire(d *dialog) {
	d.qmu.Lock()
	failed := d.failed
	d.qmu.Unlock()
	if failed {
		s.drop(d)
		return
	}
	if d.isList() {
		if err := s.dropList(d, true, true, "timeout"); err != nil {
			s.timers.arm(d, time.Now().Add(retryExpiry))
		}
		return
	}
	r := d.res
	s.lock(r)
	defer s.release(r)
	if d.gone || time.Now().Before(d.expires()) {
		return
	}
	c, err := s.end(r, d, "timeout")
	if err != nil {
		s.timers.arm(d, time.Now().Add(retryExpiry))
		return
	}
	c.emit()
}

// end ends d: it renders the current state for the final NOTIFY, commits
// the deletion and applies it; the caller emits (the final NOTIFY, the
// watcher event) once it has answered. r.mu is held. A module failure
// still ends d, with a body-less final NOTIFY; a store failure ends
// nothing.
func (s *Server) end(r *resource, d *dialog, reason string) (*change, error) {
	c := s.newChange()
	n, err := c.render(r, d)
	if err != nil {
		s.log.Warn("final NOTIFY without body: render failed", "resource", r.key.uri, "err", err)
	}
	if n != nil && n.Status == abi.StatusPending {
		n = nil // a pending watcher never sees the state
	}
	c.batch.DeleteSubscriptions = []string{d.id()}
	if err := c.commit(); err != nil {
		return nil, err
	}
	c.then(func() { s.forget(d) })
	c.apply()
	c.notify(d, "terminated;reason="+reason, n, true)
	c.watcherEvent(d, abi.StatusTerminated, reason)
	return c, nil
}

// watcherEvent tells the watcher-info package of d's package, if one is
// loaded, that d changed (RFC 3857): its own watchers, the presentity's
// winfo subscriptions, get a NOTIFY. d's resource is locked; the winfo
// resource is locked after it, never before. A failure here is logged and
// does not undo the subscription change.
func (s *Server) watcherEvent(d *dialog, status, event string) {
	wp := s.cat().winfoOf[d.event()]
	if wp == nil {
		return
	}
	w := s.lockResource(wp, d.resource())
	defer s.release(w)
	if w.watcherCount() == 0 {
		// Nobody watches: no module call, no commit, no state growing with
		// every subscription. The first watcher-info subscriber has the
		// state rebuilt from the live subscriptions (rebuildWatcherInfo).
		return
	}
	c := s.newChange()
	_, err := c.propose(w, abi.Request{Op: abi.OpWatcherEvent, WatcherEvent: watcherEventOf(d, status, event)})
	if err == nil {
		err = c.run()
	}
	if err != nil {
		s.log.Warn("watcher info not updated", "package", wp.name, "resource", d.resource(), "err", err)
	}
}

// setAccept sets d's Accept (nil: its SUBSCRIBE had none), d.res set. One
// the same as its package's points to the package's own list, which
// nearly every subscription asks for, instead of holding a copy parsed
// from its SUBSCRIBE (~60 bytes), and a pointer, not a slice, is 16 bytes
// less of every dialog.
func (d *dialog) setAccept(a []string) {
	switch {
	case a == nil:
		d.accept = nil
	case len(a) > 0 && d.res != nil && d.res.pkg != nil && slices.Equal(a, *d.res.pkg.acceptList):
		d.accept = d.res.pkg.acceptList
	default:
		d.accept = &a
	}
}

// acceptList is d's Accept, nil when its SUBSCRIBE had none.
func (d *dialog) acceptList() []string {
	if d.accept == nil {
		return nil
	}
	return *d.accept
}

func watcherEventOf(d *dialog, status, event string) *abi.WatcherEvent {
	ev := &abi.WatcherEvent{ID: d.id(), URI: d.remoteURI(), Status: status, Event: event,
		Duration: int64(time.Since(d.createdAt()).Seconds())}
	if status != abi.StatusTerminated {
		ev.Expires = d.left()
	}
	return ev
}

// rebuildWatcherInfo gives w, a watcher-info resource about to get its
// first watcher, a state built afresh from the live subscriptions of the
// resource it reports on, one watcher event each, and commits it. What
// happened while nobody watched (watchers come and gone) is not replayed.
// Both resources are locked.
func (s *Server) rebuildWatcherInfo(w, watched *resource) error {
	c := s.newChange()
	c.reset(w)
	ds, err := s.watchersOf(watched)
	if err != nil {
		return err
	}
	for _, d := range ds {
		if _, err := c.propose(w, abi.Request{Op: abi.OpWatcherEvent, Watchers: []abi.Watcher{},
			WatcherEvent: watcherEventOf(d, d.status(), "subscribe")}); err != nil {
			return err
		}
	}
	if err := s.warm(w); err != nil {
		return err
	}
	if st := c.step(w); bytes.Equal(st.state, w.state) {
		return nil
	}
	return c.run()
}
