// Package server is presenced's SIP side: it listens on UDP, TCP, TLS and
// WebSocket with sipgo, validates requests, runs the notifier of RFC 6665
// and the event state compositor of RFC 3903, and asks an extension module
// about every document. It keeps live state in memory and commits every change to a
// store.Store before answering 2xx, every change by one path (change.go:
// propose, commit, apply, emit); it knows nothing of XML.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/header"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/rls"
	"github.com/presenced/presenced/internal/store"
)

// Listener is one SIP listening socket.
type Listener struct {
	Transport string // "udp", "tcp", "tls", "ws" or "wss" (SIP over WebSocket, RFC 7118)
	Address   string // host:port; port 0 picks a free one
	Advertise string // host[:port] for Contact and Via; empty: the bound address
	CertFile  string // tls, wss
	KeyFile   string // tls, wss
}

// WatchHook is told when a resource gains and loses a subscription; calls
// are balanced and made under the resource's lock, so they must not block.
type WatchHook interface {
	Watch(event, resource string)
	Unwatch(event, resource string)
}

// ChangeHook, when the Watch hook implements it too, is told of every
// committed change of a resource's state, after it is live: how a gateway
// with watchers of its own (the XMPP component's subscribers) knows when
// to render again. It is called under the resource's lock and must not
// block.
type ChangeHook interface {
	Changed(event, resource string)
}

// Limits bound what one peer or one presentity may take; 0 turns a limit
// off.
type Limits struct {
	MaxBodyBytes                 int // a PUBLISH body above it gets 413
	MaxMessageBytes              int // larger messages: 513 over UDP, the connection closed over TCP
	MaxSubscriptionsPerWatcher   int // 403 above
	MaxWatchersPerPresentity     int // 403 above
	MaxPublicationsPerPresentity int // 403 above
	RequestsPerSecondPerSource   int // 503 + Retry-After above, per source IP
	MaxInFlight                  int // requests handled or queued at once, less those waiting for their commit; 503 + Retry-After above (tooBusy)
	TCPIdleTimeout               time.Duration
	// TrustedSources are proxies: a request from one is accounted to, and
	// logged as, the client its Vias name (clientAddr), and one a proxy
	// sends for itself is not limited per source.
	TrustedSources []netip.Prefix
}

// Bounds are the Expires limits of one method.
type Bounds struct{ Min, Max int }

// RegistrarBounds are the registrar's Expires limits and default.
type RegistrarBounds struct{ Min, Max, Default int }

// Options configure a Server.
type Options struct {
	UserAgent    string
	Domains      []string // presentity domains served; empty serves any
	Listen       []Listener
	Subscription Bounds
	Publication  Bounds
	Registrar    RegistrarBounds
	Limits       Limits
	Auth         *Auth // nil: no authentication
	// Watch, when set, hears of every subscription that starts and ends
	// (event package, resource): how a backend such as the XMPP connector
	// knows which presentities have watchers.
	Watch   WatchHook
	Modules []*extension.Module
	Store   store.Store
	// Lease is how long this node's lease on its dialogs runs without a
	// renewal, on a store several nodes share (DefaultLease if 0). Node
	// names it there (its data_dir: one process holds it), so that, back
	// after a crash, it takes its dialogs at once; "" is a name of its
	// own, and they wait for the lease to run out.
	Lease   time.Duration
	Node    string
	Logger  *slog.Logger
	Metrics *metrics.Metrics // nil records nothing
	// Lists are the resource lists of the rls-services file (RFC 4826);
	// SetLists replaces them. ListThrottle is the shortest time between
	// two NOTIFYs of one list subscription (RFC 4662 §6); 0 sends each
	// change at once.
	Lists        []rls.List
	ListThrottle time.Duration
	// IdleSubscriptions is how long a subscription has nothing to send
	// before it is let go of, its record in the store alone, read back
	// when something needs it (RATIONALE.md "Idle subscriptions live in
	// the store"); 0 keeps every one in memory, as a store several nodes
	// share (leases) always does.
	IdleSubscriptions time.Duration
}

// Server is a running presence server.
type Server struct {
	opt     Options
	log     *slog.Logger
	store   store.Store
	catalog atomic.Pointer[catalog] // swapped whole by Reload
	// resourceIDs gives each resource and admin list its store id.
	resourceIDs idClock
	domains     map[string]bool

	ua  *sipgo.UserAgent
	sip *sipgo.Server
	cli *sipgo.Client

	// contacts and flows, per transport ("udp", "tcp"), from the first
	// listener of each
	contact map[string]sip.Uri
	// contactHeaders are the same as the Contact header of a 2xx to a
	// SUBSCRIBE, written once: sipgo writes a ContactHeader's URI anew
	// for each answer. Shared, so never written to.
	contactHeaders map[string]sip.Header
	// udpContact is the Contact header line of NOTIFYs over UDP, as
	// udpNotify writes it ("" without a UDP listener).
	udpContact string
	udpAddr    sip.Addr
	// udpConns are the UDP listeners (*udpListener) by local address, the
	// *net.UDPAddr its LocalAddr returns each time, for refuseEarly;
	// busyTag is the To tag of those answers; parser is sipgo's,
	// which refuseEarly runs to answer what sipgo would drop and to hand
	// udp the request parsed.
	udpConns sync.Map
	busyTag  string
	parser   *sip.Parser
	udp      *udpTransactions
	// notifies are the NOTIFYs sent over UDP without sipgo's client
	// transaction, from udpConn (the first UDP listener) with viaHost in
	// their Via.
	notifies udpNotifies
	udpConn  net.PacketConn
	viaHost  string
	// handlers are the guarded handlers by method, noRoute the one for
	// any other: sipgo's and udp's workers call the same.
	handlers map[sip.RequestMethod]sipgo.RequestHandler
	noRoute  sipgo.RequestHandler
	bound    []string
	closers  []func() error
	timers   timers // every expiry: subscriptions, publications, bindings

	mu        sync.Mutex
	resources index[*resource]
	cold      index[uint64]       // the store ids of presentities let go of (Server.cool)
	dialogs   map[hashKey]*dialog // by dialog ID (keyOf; Server.dialog)
	// idleDialogs are the resources of the dialogs let go of (idle.go),
	// by dialog ID (keyOf), and idle the dialogs held, for sweepIdle.
	idleDialogs map[hashKey]*resource
	idle        idleQueue
	// wsDialogs are the subscriptions that came over each WebSocket
	// connection, by transport and source: the connection is the only way
	// to reach them, so they end with it (wsClosed).
	wsDialogs  map[wsConn]map[*dialog]struct{}
	closed     bool
	restored   chan struct{} // closed once restore is done: what the feed heard waits for it
	leases     store.Leases  // on a shared store: this node's epoch and lease (lease.go)
	leaseUntil atomic.Int64  // unix nanoseconds, by this node's clock, its lease as last renewed
	node       string        // its name there

	regMu    sync.Mutex                     // the registrar; taken before any resource
	bindings map[string]map[string]*binding // AOR -> bindingKey -> binding
	// flows are the bindings registered over TCP or TLS, by AOR, for the
	// NOTIFY sender; flowMu is taken last, under any other lock.
	flowMu sync.Mutex
	flows  map[string][]flow

	logLimit rateLimit // of "request refused" lines: malformed floods must not flood the log
	storeLog rateLimit // of "store commit failed" lines: a full disk fails every request
	storeDue storeDeadline
	inFlight atomic.Int64
	// committing counts the changes waiting for their commit (waitCommit):
	// admission leaves them out of max_in_flight while commits keep up
	// (commitLag, nanoseconds the last one waited), and the UDP workers
	// are as many more.
	committing atomic.Int64
	commitLag  atomic.Int64
	sources    *sourceLimiter
	watching   map[hashKey]int // subscriptions per watcher URI (keyOf), under mu
	lists      lists
	// renders are the resources whose watchers a change left to render
	// after its answer (change.renderLater), each with when the first
	// change they report happened.
	renderMu sync.Mutex
	renders  map[*resource]time.Time
	// rendered is signalled, under renderMu, when a rendering that let
	// go of its resource's lock ends (lock).
	rendered *sync.Cond

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// eventPackage is an event package and the module serving it.
type eventPackage struct {
	name   string
	info   abi.Package
	mod    *extension.Module
	accept map[string]bool
	// acceptList is info.Accept, which dialogs asking for the same point
	// to (dialog.setAccept): allocated apart, so that they do not keep
	// the package alive after a reload.
	acceptList *[]string
	// the server's Expires bounds, narrowed by the package's own
	subscription, publication Bounds
}

// narrow applies a package's own Expires bounds over the server's.
func narrow(b Bounds, min, max uint32) Bounds {
	if min > 0 {
		b.Min = int(min)
	}
	if max > 0 {
		b.Max = int(max)
	}
	return b
}

// New builds a server; Start opens its sockets.
func New(opt Options) (*Server, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Store == nil {
		opt.Store = store.NewMemory()
	}
	if opt.UserAgent == "" {
		opt.UserAgent = "presenced"
	}
	s := &Server{opt: opt, log: opt.Logger, store: opt.Store,
		domains: map[string]bool{},
		contact: map[string]sip.Uri{}, contactHeaders: map[string]sip.Header{}, resources: index[*resource]{}, cold: index[uint64]{},
		dialogs: map[hashKey]*dialog{}, idleDialogs: map[hashKey]*resource{}, wsDialogs: map[wsConn]map[*dialog]struct{}{}, renders: map[*resource]time.Time{},
		bindings: map[string]map[string]*binding{}, flows: map[string][]flow{}}
	s.rendered = sync.NewCond(&s.renderMu)
	if s.opt.Registrar == (RegistrarBounds{}) {
		s.opt.Registrar = RegistrarBounds{Min: 60, Max: 86400, Default: 3600}
	}
	s.timers.s = s
	s.busyTag = newToken()
	s.udp = newUDPTransactions(s, cmp.Or(opt.Limits.MaxInFlight, 1024))
	s.node = opt.Node
	if s.node == "" {
		s.node = newToken()
	}
	s.logLimit = rateLimit{perSecond: 50, log: s.log, what: "request refused"}
	s.storeLog = rateLimit{perSecond: 5, log: s.log, what: "store commit failed"}
	s.watching = map[hashKey]int{}
	if n := opt.Limits.RequestsPerSecondPerSource; n > 0 {
		s.sources = newSourceLimiter(n)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	c, err := newCatalog(opt, opt.Modules)
	if err != nil {
		return nil, err
	}
	s.catalog.Store(c)
	for _, d := range opt.Domains {
		s.domains[strings.ToLower(d)] = true
	}
	s.lists.admin = map[string]*rls.List{}
	s.lists.stored = map[string]storedList{}
	if s.lists.file, err = listIndex(opt.Lists); err != nil {
		return nil, err
	}
	return s, nil
}

// Start binds every listener and serves until Close. It returns once the
// sockets are bound, so a caller may send at once.
func (s *Server) Start() error {
	// sipgo logs through its package default; keep its lines in ours.
	sipLog := s.log.With("component", "sipgo")
	setSipgoLog(limitedHandler{sipLog.Handler(), &rateLimit{perSecond: 20, log: s.log, what: "sipgo"}})
	parser := sip.NewParser(sip.WithHeadersParsers(headerParsers))
	if n := s.opt.Limits.MaxMessageBytes; n > 0 {
		parser.MaxMessageLength = n
	}
	s.parser = parser
	// An idle TCP, TLS or WebSocket connection costs a goroutine and a
	// 32 KB buffer (3,000 idle connections were 101 MB of heap): close it
	// after the idle timeout.
	idle := s.opt.Limits.TCPIdleTimeout
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(s.opt.UserAgent), sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerTransports(sip.TransportsConfig{
			TCP: &sip.TransportTCP{ReadTimeout: idle},
			TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{ReadTimeout: idle}},
			WS:  &sip.TransportWS{ReadTimeout: idle},
			WSS: &sip.TransportWSS{TransportWS: &sip.TransportWS{ReadTimeout: idle}},
		}), sip.WithTransportLayerReadFilter(s.refuseEarly)))
	if err != nil {
		return err
	}
	s.ua = ua
	s.sip, err = sipgo.NewServer(ua, sipgo.WithServerLogger(sip.DefaultLogger()))
	if err != nil {
		return err
	}
	s.handlers = map[sip.RequestMethod]sipgo.RequestHandler{
		sip.SUBSCRIBE: s.guard(s.answered(s.subscribe)),
		sip.PUBLISH:   s.guard(s.answered(s.publish)),
		sip.REGISTER:  s.guard(s.answered(s.register)),
		sip.OPTIONS: s.guard(func(req *sip.Request, tx sip.ServerTransaction) {
			s.reply(req, tx, 200, "", sip.NewHeader("Allow-Events", s.cat().allow))
		}),
	}
	for m, h := range s.handlers {
		s.sip.OnRequest(m, h)
	}
	// Other methods are validated like ours before the 405, so a malformed
	// request gets its 400 whatever its method (RFC 4475 mismatch02, insuf).
	s.noRoute = s.guard(func(req *sip.Request, tx sip.ServerTransaction) {
		s.reply(req, tx, 405, "", sip.NewHeader("Allow", "SUBSCRIBE, PUBLISH, REGISTER, OPTIONS"))
	})
	s.sip.OnNoRoute(s.noRoute)
	var advertiseHost string
	for _, l := range s.opt.Listen {
		addr, err := s.listen(l)
		if err != nil {
			s.Close()
			return fmt.Errorf("listen %s %s: %w", l.Transport, l.Address, err)
		}
		s.bound = append(s.bound, l.Transport+":"+addr)
		host, port, _ := net.SplitHostPort(addr)
		if l.Advertise != "" {
			if h, p, err := net.SplitHostPort(l.Advertise); err == nil {
				host, port = h, p
			} else {
				host = l.Advertise
			}
		}
		if advertiseHost == "" {
			advertiseHost = host
		}
		if _, ok := s.contact[l.Transport]; !ok {
			p, _ := strconv.Atoi(port)
			u := sip.Uri{Scheme: "sip", Host: host, Port: p, UriParams: sip.NewParams()}
			u.UriParams.Add("transport", uriTransport(l.Transport))
			s.contact[l.Transport] = u
			s.contactHeaders[l.Transport] = sip.NewHeader("Contact", (&sip.ContactHeader{Address: u}).Value())
			if l.Transport == "udp" {
				s.udpContact = (&sip.ContactHeader{Address: u}).String() + "\r\n"
			}
		}
	}
	if s.udpAddr.IP != nil {
		s.udp.start(s.serveUDP)
		s.viaHost = advertiseHost
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.notifies.retransmit(s.ctx, func(err error) { s.log.Warn("retransmit NOTIFY", "err", err) })
		}()
	}
	s.cli, err = sipgo.NewClient(ua, sipgo.WithClientHostname(advertiseHost))
	if err != nil {
		return err
	}
	if err := s.join(); err != nil {
		s.Close()
		return fmt.Errorf("join the store's nodes: %w", err)
	}
	s.restored = make(chan struct{})
	if err := s.follow(); err != nil {
		s.Close()
		return fmt.Errorf("follow the store's changes: %w", err)
	}
	if err := s.restore(); err != nil {
		s.Close()
		return fmt.Errorf("restore state: %w", err)
	}
	close(s.restored)
	if s.leases != nil {
		err := s.takeOver(s.storeContext())
		if err != nil {
			s.Close()
			return fmt.Errorf("take over dialogs: %w", err)
		}
		s.wg.Add(2)
		go s.every(s.lease()/leaseRenewals, s.keepLease)
		go s.every(s.lease(), s.expireLeftNow)
	} else if t := s.opt.IdleSubscriptions; t > 0 {
		s.wg.Add(1)
		go s.every(idleTick(t), s.sweepIdle)
	}
	return nil
}

func (s *Server) listen(l Listener) (string, error) {
	switch l.Transport {
	case "udp":
		pc, err := net.ListenPacket("udp", l.Address)
		if err != nil {
			return "", err
		}
		// Bursts of NOTIFY answers overflow the default 208 KB buffer
		// (datagrams were lost at 2,000 subscribe-and-unsubscribe calls a
		// second); 4 MB kept the same run clean.
		if uc, ok := pc.(*net.UDPConn); ok {
			uc.SetReadBuffer(4 << 20)
			uc.SetWriteBuffer(4 << 20)
		}
		ua := pc.LocalAddr().(*net.UDPAddr)
		if s.udpAddr.IP == nil {
			s.udpAddr = sip.Addr{IP: ua.IP, Port: ua.Port}
			s.udpConn = pc
		}
		s.closers = append(s.closers, pc.Close)
		s.udpConns.Store(pc.LocalAddr(), &udpListener{conn: pc})
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.sip.ServeUDP(pc) }()
		// ServeUDP puts the socket in sipgo's pool from its goroutine; a
		// NOTIFY sent before that (restore resyncs watchers right after
		// the listeners start) would make sipgo bind the port again and
		// fail. Wait for it, briefly.
		for i := 0; i < 1000; i++ {
			if c, _ := s.sip.TransportLayer().GetConnection("udp", ua.String()); c != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		return ua.String(), nil
	case "tcp":
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			return "", err
		}
		s.closers = append(s.closers, ln.Close)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.sip.ServeTCP(ln) }()
		return ln.Addr().String(), nil
	case "tls":
		conf, err := tlsConfig(l)
		if err != nil {
			return "", err
		}
		ln, err := tls.Listen("tcp", l.Address, conf)
		if err != nil {
			return "", err
		}
		s.closers = append(s.closers, ln.Close)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.sip.ServeTLS(ln) }()
		return ln.Addr().String(), nil
	case "ws", "wss":
		var conf *tls.Config
		if l.Transport == "wss" {
			var err error
			if conf, err = tlsConfig(l); err != nil {
				return "", err
			}
		}
		tcp, err := net.Listen("tcp", l.Address)
		if err != nil {
			return "", err
		}
		transport := l.Transport
		ln := newWSListener(tcp, conf, func(raddr string) { s.wsClosed(transport, raddr) })
		s.closers = append(s.closers, ln.Close)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if transport == "wss" {
				s.sip.ServeWSS(ln) // TLS is the vetting listener's: sipgo's WSS serves a listener as it is
			} else {
				s.sip.ServeWS(ln)
			}
		}()
		return tcp.Addr().String(), nil
	}
	return "", fmt.Errorf("unsupported transport %q", l.Transport)
}

// uriTransport is the transport parameter of a SIP URI reached over
// transport: RFC 7118 §5.2 defines "ws" alone, secure or not (as RFC 3261
// has no "tls"); the Via says WS or WSS.
func uriTransport(transport string) string {
	if transport == "wss" {
		return "ws"
	}
	return transport
}

// tlsConfig is a TLS listener's: its certificate, TLS 1.2 at least (RFC
// 8996 deprecates 1.0 and 1.1).
func tlsConfig(l Listener) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(l.CertFile, l.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Addrs returns the bound listeners as "transport:host:port".
func (s *Server) Addrs() []string { return s.bound }

// Close stops the listeners, the timers and the NOTIFY senders. State in
// the store is kept.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.timers.close()
	s.cancel()
	s.udp.close()
	for _, c := range s.closers {
		c()
	}
	if s.ua != nil {
		s.ua.Close()
	}
	s.wg.Wait()
	return nil
}

// busy counts a goroutine in s.wg, for Close to wait for, unless s is
// closing: then it returns false and the caller does nothing. A goroutine
// the server did not start (the store's feed) starts work this way, as
// one it starts from such a goroutine does: s.wg.Add from zero while
// Close waits is a race.
func (s *Server) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// guard validates what every handler relies on and turns a panic into a
// 500: sipgo passes requests without To/From/Call-ID to handlers and has no
// recover: one panicking handler would kill the process.
func (s *Server) guard(h func(*sip.Request, sip.ServerTransaction)) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("handler panic", "method", req.Method.String(), "panic", r, "stack", string(debug.Stack()))
				s.reply(req, tx, 500, "internal error")
			}
		}()
		s.opt.Metrics.Request(req.Method.String())
		if !s.admit(req, tx) {
			return
		}
		defer s.inFlight.Add(-1)
		if req.SipVersion != "SIP/2.0" {
			res := sip.NewResponseFromRequest(req, 505, "Version Not Supported", nil)
			res.SipVersion = "SIP/2.0"
			s.respond(req, tx, res, fmt.Sprintf("%s is not supported", req.SipVersion))
			return
		}
		if msg := missingHeader(req); msg != "" {
			s.reply(req, tx, 400, msg)
			return
		}
		if scheme := strings.ToLower(req.Recipient.Scheme); scheme != "sip" && scheme != "sips" {
			s.reply(req, tx, 416, fmt.Sprintf("request-URI scheme %q is not supported", req.Recipient.Scheme))
			return
		}
		if !s.authenticate(req, tx) {
			return
		}
		h(req, tx)
	}
}

// singleValued are the headers a request may carry once (RFC 3261 §7.3.1)
// that the server or sipgo reads. sipgo keeps every copy, its accessors
// return the last and GetHeader the first, so two with different values
// would have the server act on one and answer with the other (the Expires
// checked is not the Expires granted; the body framed by one
// Content-Length, refused by another). Compact forms arrive under their
// full names (sipgo's parser and header.Parsers map them).
var singleValued = [...]string{"From", "To", "Call-ID", "CSeq", "Max-Forwards",
	"Expires", "Event", "Content-Type", "Content-Length"}

// missingHeader says what makes req unfit for a handler, "" if nothing:
// a header it needs is missing or malformed, or a single-valued one is
// repeated with another value. A copy with the same value is ambiguous to
// nobody and is let through.
func missingHeader(req *sip.Request) string {
	// One pass over the headers, names compared in place: GetHeaders per
	// name lower-cased each header's name into a new string, nine times
	// (RATIONALE.md "Answers written as bytes").
	var first, other [len(singleValued)]sip.Header
	for _, h := range req.Headers() {
		hn := h.Name()
		for i, name := range singleValued {
			if !header.SameName(hn, name) {
				continue
			}
			if first[i] == nil {
				first[i] = h
			} else if other[i] == nil && h.Value() != first[i].Value() {
				other[i] = h
			}
			break
		}
	}
	for i, name := range singleValued {
		if other[i] != nil {
			return fmt.Sprintf("more than one %s header (%s; %s)", name, first[i].Value(), other[i].Value())
		}
	}
	switch {
	case req.From() == nil:
		return "missing or malformed From header"
	case req.To() == nil:
		return "missing or malformed To header"
	case req.CallID() == nil || req.CallID().Value() == "":
		return "missing Call-ID header"
	case req.CSeq() == nil:
		return "missing CSeq header"
	case !strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)): // sipgo upper-cases the request line's method only
		return fmt.Sprintf("CSeq method %s does not match request method %s", req.CSeq().MethodName, req.Method)
	case req.MaxForwards() == nil:
		return "missing Max-Forwards header"
	}
	if tag, _ := req.From().Params.Get("tag"); tag == "" {
		return "From header has no tag"
	}
	return ""
}

// reply answers req. A non-2xx carries warning, when given, in a Warning
// header and is logged with it.
func (s *Server) reply(req *sip.Request, tx sip.ServerTransaction, code int, warning string, hdrs ...sip.Header) {
	s.replyTagged(req, tx, code, "", warning, hdrs...)
}

// replyOK answers req 200 OK with hdrs, and when req has no To tag,
// toTag ("": one drawn as sipgo draws it) on its To.
func (s *Server) replyOK(req *sip.Request, tx sip.ServerTransaction, toTag string, hdrs ...sip.Header) {
	s.replyTagged(req, tx, 200, toTag, "", hdrs...)
}

// replyTagged is reply with toTag as replyOK takes it. Over UDP it writes
// the bytes sipgo would write (TestAnswerBytesAsSipgo) without building a
// sipgo Response (RATIONALE.md "Answers written as bytes").
func (s *Server) replyTagged(req *sip.Request, tx sip.ServerTransaction, code int, toTag, warning string, hdrs ...sip.Header) {
	utx, isUDP := tx.(*udpTx)
	if !isUDP {
		res := sip.NewResponseFromRequest(req, code, reasonPhrase(code), nil)
		if to := res.To(); to != nil && toTag != "" {
			to.Params.Add("tag", toTag)
		}
		s.respond(req, tx, res, warning, hdrs...)
		return
	}
	if warning != "" {
		hdrs = append([]sip.Header{header.Warning(s.opt.UserAgent, warning)}, hdrs...)
	}
	s.sent(req, code, warning)
	if err := utx.answer(code, reasonPhrase(code), toTag, hdrs); err != nil {
		s.log.Warn("send response", "code", code, "err", err)
	}
}

func (s *Server) respond(req *sip.Request, tx sip.ServerTransaction, res *sip.Response, warning string, hdrs ...sip.Header) {
	if warning != "" {
		res.AppendHeader(header.Warning(s.opt.UserAgent, warning))
	}
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	s.sent(req, res.StatusCode, warning)
	if err := tx.Respond(res); err != nil {
		s.log.Warn("send response", "code", res.StatusCode, "err", err)
	}
}

// sent counts an answer to req, and logs a refusal with its warning.
func (s *Server) sent(req *sip.Request, code int, warning string) {
	if code >= 300 && s.logLimit.allow() {
		args := []any{"method", req.Method.String(), "code", code, "reason", warning}
		if client, proxied := s.clientAddr(req); proxied {
			args = append(args, "source", client, "proxy", req.Source())
		} else {
			args = append(args, "source", req.Source())
		}
		s.log.Info("request refused", append(args, "call_id", callID(req))...)
	}
	s.opt.Metrics.Response(req.Method.String(), code)
}

func callID(req *sip.Request) string {
	if c := req.CallID(); c != nil {
		return c.Value()
	}
	return ""
}

// event parses the request's Event header and finds its package.
func (s *Server) event(req *sip.Request) (header.Event, *eventPackage, error) {
	h := header.Get(req, "Event")
	if h == nil {
		return header.Event{}, nil, refuse(400, "missing Event header")
	}
	ev, err := header.ParseEvent(h.Value())
	if err != nil {
		return ev, nil, refuse(400, "bad Event header: "+err.Error())
	}
	ep := s.cat().packages[ev.Package]
	if ep == nil {
		return ev, nil, refuse(489, fmt.Sprintf("event package %q is not served", ev.Package),
			sip.NewHeader("Allow-Events", s.cat().allow))
	}
	return ev, ep, nil
}

// resourceURI is the presentity a request is for: its request-URI reduced
// to sip:user@host.
func (s *Server) resourceURI(req *sip.Request) (string, error) {
	u := req.Recipient
	if u.User == "" {
		return "", refuse(404, "request-URI has no user part")
	}
	host := strings.ToLower(u.Host)
	if len(s.domains) > 0 && !s.domains[host] {
		return "", refusef(404, "domain %q is not served here", host)
	}
	key, ok := presentityOf(u)
	if !ok {
		return "", refusef(400, "request-URI %s names no presentity (sip:user@host)", u.String())
	}
	return key, nil
}

// expires applies the Expires rules shared by SUBSCRIBE and PUBLISH:
// absent gives the package default, below the minimum is 423 (0 excepted),
// above the maximum is clamped.
func (s *Server) expires(req *sip.Request, b Bounds, def uint32) (secs int, given bool, err error) {
	secs, given, err = header.Expires(req)
	if err != nil {
		return 0, given, refuse(400, err.Error())
	}
	if !given {
		secs = int(def)
	}
	if secs > 0 && secs < b.Min {
		return 0, given, refuse(423, fmt.Sprintf("expires %d is below the minimum %d", secs, b.Min),
			sip.NewHeader("Min-Expires", strconv.Itoa(b.Min)))
	}
	return min(secs, b.Max), given, nil
}
