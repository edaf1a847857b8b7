package server_test

import (
	"fmt"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// benchStores are the backends the throughput benchmarks compare.
func benchStores(b *testing.B) map[string]func() store.Store {
	return map[string]func() store.Store{
		"memory": func() store.Store { return store.NewMemory() },
		"sqlite": func() store.Store {
			s, err := store.OpenSQLite(filepath.Join(b.TempDir(), "presenced.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
	}
}

// perStore runs op against a server on each store, from 128 UDP clients
// in parallel (enough to fill a commit group), each op on a presentity of
// its own.
func perStore(b *testing.B, op func(p *siptest.Peer, uri string)) {
	for _, name := range []string{"memory", "sqlite"} {
		b.Run(name, func(b *testing.B) {
			f := start(b, benchStores(b)[name](), echo(b))
			parallel(b, f, func(p *siptest.Peer, n int64) { op(p, fmt.Sprintf("sip:bench%d@example.com", n)) })
		})
	}
}

// parallel times op from 128 UDP clients of f in parallel, each call
// numbered, and reports the process's CPU per op.
func parallel(b *testing.B, f *fixture, op func(p *siptest.Peer, n int64)) {
	var n atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	cpu := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		p := siptest.NewPeer(b, "UDP", f.addr["UDP"])
		for pb.Next() {
			op(p, n.Add(1))
		}
	})
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is the CPU time this process has used, server and clients:
// on a machine other jobs share, a steadier figure than the wall clock.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPublish is new PUBLISHes, each waiting for its 200: the durable
// store's cost against the in-memory one. The echo module keeps wasm time
// small so the store's share shows.
func BenchmarkPublish(b *testing.B) {
	perStore(b, func(p *siptest.Peer, uri string) {
		if r := p.Publish("echo", uri, "text/plain", "open"); r.StatusCode != 200 {
			b.Fatalf("PUBLISH: %d", r.StatusCode)
		}
	})
}

// BenchmarkSubscribe is initial SUBSCRIBEs, each op waiting for the 200
// and the NOTIFY (answered 200). (Subscribes to one presentity are
// serialised by its lock, commit included: that case is fan-in, not this
// one.)
func BenchmarkSubscribe(b *testing.B) {
	perStore(b, func(p *siptest.Peer, uri string) {
		if _, r := p.Subscribe("echo", uri, "Expires: 600"); r.StatusCode != 200 {
			b.Fatalf("SUBSCRIBE: %d", r.StatusCode)
		}
		p.Notify()
	})
}

// BenchmarkSubscribePresence is initial SUBSCRIBEs to 200 presentities
// with a published state each, in turn, with pa rendering and SQLite
// storing: what a presence server does as watchers come online, each
// presentity watched by many.
func BenchmarkSubscribePresence(b *testing.B) {
	st, err := store.OpenSQLite(filepath.Join(b.TempDir(), "presenced.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	f := start(b, st, extensiontest.Load(b, paPkg, nil))
	const presentities = 200
	p := siptest.NewPeer(b, "UDP", f.addr["UDP"])
	for i := range presentities {
		uri := fmt.Sprintf("sip:p%d@example.com", i)
		if r := p.Publish("presence", uri, "application/pidf+xml", pidf(uri, "t1", "open", "here")); r.StatusCode != 200 {
			b.Fatalf("PUBLISH: %d", r.StatusCode)
		}
	}
	parallel(b, f, func(p *siptest.Peer, n int64) {
		if _, r := p.Subscribe("presence", fmt.Sprintf("sip:p%d@example.com", n%presentities), "Expires: 600"); r.StatusCode != 200 {
			b.Fatalf("SUBSCRIBE: %d", r.StatusCode)
		}
		p.Notify()
	})
}

// BenchmarkSubscribeFanIn is initial SUBSCRIBEs from 128 clients at once,
// all to one presentity (a receptionist's lamp after a restart of every
// phone): the changes to one resource are ordered, so this measures how
// much of that order costs.
func BenchmarkSubscribeFanIn(b *testing.B) {
	perStore(b, func(p *siptest.Peer, _ string) {
		if _, r := p.Subscribe("echo", "sip:popular@example.com", "Expires: 600"); r.StatusCode != 200 {
			b.Fatalf("SUBSCRIBE: %d", r.StatusCode)
		}
		p.Notify()
	})
}

// BenchmarkNotify is the cost of building and sending one NOTIFY (and
// reading its 200) in a fan-out: one presentity with 100 UDP watchers, each
// op a modifying PUBLISH, reported per NOTIFY delivered.
func BenchmarkNotify(b *testing.B) {
	fanOut(b, echo(b), "echo", "text/plain", 100, 0, func(uri string, i int) string { return fmt.Sprintf("v%d", i) })
}

// BenchmarkNotifyPresence is bench's fan-out workload in process: one
// presentity with 1,000 UDP watchers, the pa module rendering each NOTIFY,
// each op a modifying PUBLISH of a PIDF. What it reports per NOTIFY is the
// whole process (server and the watchers answering), allocations included.
func BenchmarkNotifyPresence(b *testing.B) {
	fanOut(b, extensiontest.Load(b, paPkg, nil), "presence", "application/pidf+xml", 1000, 0,
		func(uri string, i int) string { return pidf(uri, "t1", "open", fmt.Sprintf("v%d", i)) })
}

// BenchmarkNotifyPresencePaced is BenchmarkNotifyPresence paced as bench's
// publisher is: each PUBLISH follows the last one's 200 after a pause (20
// ms: bench's 50,000 NOTIFY/s step), whatever the NOTIFYs are doing, so a
// PUBLISH meets the rendering of the one before.
func BenchmarkNotifyPresencePaced(b *testing.B) {
	fanOut(b, extensiontest.Load(b, paPkg, nil), "presence", "application/pidf+xml", 1000, 20*time.Millisecond,
		func(uri string, i int) string { return pidf(uri, "t1", "open", fmt.Sprintf("v%d", i)) })
}

// BenchmarkWatchedPublish is BenchmarkNotifyPresence with a few
// watchers: where rendering for the watchers after the 200, in a change of
// its own, starts to pay for its second module call and commit
// (renderApart).
func BenchmarkWatchedPublish(b *testing.B) {
	for _, n := range []int{1, 16, 64, 128, 256} {
		b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) {
			fanOut(b, extensiontest.Load(b, paPkg, nil), "presence", "application/pidf+xml", n, 0,
				func(uri string, i int) string { return pidf(uri, "t1", "open", fmt.Sprintf("v%d", i)) })
		})
	}
}

// fanOut runs b.N modifying PUBLISHes of body(uri, i) to one presentity
// with the given number of UDP watchers, on the SQLite store. With gap 0
// each op waits for every watcher's NOTIFY (answered 200); with a gap the
// next PUBLISH follows a 200 after it, the watchers reading their NOTIFYs
// meanwhile, and the server may send fewer NOTIFYs than PUBLISHes (a
// rendering covers the states published while it waited): what is
// reported per NOTIFY counts those received.
func fanOut(b *testing.B, mod *extension.Module, event, ctype string, watchers int, gap time.Duration, body func(uri string, i int) string) {
	f := start(b, benchStores(b)["sqlite"](), mod)
	p := siptest.NewPeer(b, "UDP", f.addr["UDP"])
	uri := "sip:lamp@example.com"
	r := p.Publish(event, uri, ctype, body(uri, 0))
	if r.StatusCode != 200 {
		b.Fatalf("PUBLISH: %d", r.StatusCode)
	}
	etag := siptest.Header(r, "SIP-ETag")
	ws := make([]*siptest.Peer, watchers)
	for i := range ws {
		ws[i] = siptest.NewPeer(b, "UDP", f.addr["UDP"])
		if _, r := ws[i].Subscribe(event, uri, "Expires: 600"); r.StatusCode != 200 {
			b.Fatalf("SUBSCRIBE: %d", r.StatusCode)
		}
		ws[i].Notify()
	}
	var received atomic.Int64
	var last atomic.Int64 // when the last NOTIFY came, unix nanoseconds
	stop := make(chan struct{})
	var readers sync.WaitGroup
	if gap > 0 {
		for _, w := range ws {
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if w.NotifyWithin(50*time.Millisecond) != nil {
						received.Add(1)
						last.Store(time.Now().UnixNano())
					}
				}
			}()
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	b.ResetTimer()
	cpu := processCPU()
	began := time.Now()
	var toOK time.Duration // PUBLISH to its 200: what paces bench's publisher
	for i := 0; i < b.N; i++ {
		sent := time.Now()
		r := p.Publish(event, uri, ctype, body(uri, i+1), "SIP-If-Match: "+etag)
		toOK += time.Since(sent)
		if r.StatusCode != 200 {
			b.Fatalf("PUBLISH: %d", r.StatusCode)
		}
		etag = siptest.Header(r, "SIP-ETag")
		if gap > 0 {
			time.Sleep(gap)
			continue
		}
		for _, w := range ws {
			w.Notify()
		}
	}
	n := float64(b.N * watchers)
	if gap > 0 {
		// The NOTIFYs still due leave within a rendering or two.
		for seen := int64(-1); seen != received.Load(); time.Sleep(200 * time.Millisecond) {
			seen = received.Load()
		}
		close(stop)
		readers.Wait()
		n = float64(received.Load())
		b.ReportMetric(n/time.Duration(last.Load()-began.UnixNano()).Seconds(), "notify/s")
	}
	used := processCPU() - cpu
	b.ReportMetric(float64(used.Nanoseconds())/n, "cpu-ns/notify")
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/publish")
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/notify")
	b.ReportMetric(float64(ms.Mallocs-mallocs)/n, "allocs/notify")
	b.ReportMetric(float64(toOK.Microseconds())/1000/float64(b.N), "ms-to-200/publish")
}

// BenchmarkMemory reports the live heap each idle subscription and each
// publication (a ~300-byte PIDF) costs the server, SQLite store, after a
// GC, as the marginal cost of n more of them: the heap is read after a
// warm-up and again after n more, so one-off costs (pools, caches, the
// wasm instances' first calls) are not spread over the count.
//
// The heap is counted from an exact allocation profile (every allocation
// sampled), leaving out what wazero holds: a wasm instance's linear memory
// grows with the guest's own heap, up to its cap, whatever the count, and
// grows by append, so its capacity (which is what the Go heap holds) runs
// ahead of the size wazero reports. Subtracting the size instead, as this
// benchmark first did, read 1.6-2.0 KB per subscription depending on
// whether a guest's memory happened to grow inside the measured window.
//
// Subscriptions are to presentities that have published state,
// as in bench's subscribe workload (several watchers each); publications
// are each for a presentity of its own, which nobody watches: what is
// counted is what memory keeps of a presentity let go of (cold), after
// the GCs that free what it held while a request was on it. sipgo keeps every UDP server
// transaction for Timer J (32 s) and every NOTIFY's client transaction for
// Timer K (5 s) to absorb retransmissions; that is transaction state, not
// subscription state, so both are shortened here and the transactions are
// let go first.
func BenchmarkMemory(b *testing.B) {
	savedJ, savedK := sip.Timer_J, sip.Timer_K
	sip.Timer_J, sip.Timer_K = 10*time.Millisecond, 10*time.Millisecond
	defer func() { sip.Timer_J, sip.Timer_K = savedJ, savedK }()
	savedRate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = savedRate }()
	// heap waits for the heap to settle: a previous run's server is let
	// go over a few seconds after it closes, and its frees would count
	// against this one. Even so, a closed server is sometimes released
	// later still, inside a later sub-benchmark's window, which then reads
	// low or negative (what holds it was not found: no goroutine, not
	// sipgo's logger, not the expiry timer); -count 1 runs read
	// consistently.
	heap := func() float64 {
		last := heapOutside("github.com/tetratelabs/wazero")
		for range 20 {
			time.Sleep(250 * time.Millisecond)
			h := heapOutside("github.com/tetratelabs/wazero")
			if d := h - last; d > -16<<10 && d < 16<<10 {
				return float64(h)
			}
			last = h
		}
		return float64(last)
	}
	const warm, n, presentities = 500, 2000, 500
	// Each with the echo module (its state is the body as published) and
	// with pa (its state is the validated body in pubstate's framing, and
	// a per-watcher state of its own).
	type module struct {
		name, event, ctype string
		load               func(testing.TB) *extension.Module
	}
	paModule := func(t testing.TB) *extension.Module { return extensiontest.Load(t, paPkg, nil) }
	for _, m := range []module{{"echo", "echo", "text/plain", echo}, {"pa", "presence", "application/pidf+xml", paModule}} {
		// An idle subscription is measured let go of (idle.go), as the
		// daemon keeps one idle past store.idle_subscriptions, and held,
		// as it keeps one that is not.
		for _, what := range []string{"publication", "subscription", "idle-subscription"} {
			b.Run(what+"/"+m.name, func(b *testing.B) {
				memoryRun(b, heap, m.load, m.event, m.ctype, what, warm, n, presentities)
			})
		}
	}
}

func memoryRun(b *testing.B, heap func() float64, load func(testing.TB) *extension.Module,
	event, ctype, what string, warm, n, presentities int) {
	for i := 0; i < b.N; i++ {
		mod := load(b)
		opt := server.Options{Store: benchStores(b)["sqlite"](), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Modules: []*extension.Module{mod}}
		idle := what == "idle-subscription"
		if idle {
			opt.IdleSubscriptions = 100 * time.Millisecond
		}
		f := startFixture(b, opt)
		p := siptest.NewPeer(b, "UDP", f.addr["UDP"])
		// settled waits until every subscription idle is let go of.
		settled := func() {
			for idle {
				if held, _ := server.Dialogs(f.srv); held == 0 {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		add := func(j int) {
			if what != "publication" {
				uri := fmt.Sprintf("sip:mem%d-%d@example.com", i, j%presentities)
				if _, r := p.Subscribe(event, uri, "Expires: 3600"); r.StatusCode != 200 {
					b.Fatalf("SUBSCRIBE: %d", r.StatusCode)
				}
				p.Notify()
				return
			}
			uri := fmt.Sprintf("sip:mem%d-%d@example.com", i, j)
			if r := p.Publish(event, uri, ctype, pidf300(uri)); r.StatusCode != 200 {
				b.Fatalf("PUBLISH: %d", r.StatusCode)
			}
		}
		if what != "publication" {
			for j := 0; j < presentities; j++ {
				uri := fmt.Sprintf("sip:mem%d-%d@example.com", i, j)
				if r := p.Publish(event, uri, ctype, pidf300(uri)); r.StatusCode != 200 {
					b.Fatalf("PUBLISH: %d", r.StatusCode)
				}
			}
		}
		for j := 0; j < warm; j++ {
			add(j)
		}
		settled()
		before := heap()
		for j := warm; j < warm+n; j++ {
			add(j)
		}
		settled()
		b.ReportMetric((heap()-before)/float64(n), "bytes/"+strings.TrimPrefix(what, "idle-"))
	}
}

// heapOutside is the live heap, in bytes, of the allocations whose stack
// has no function of package prefix pkg, from the allocation profile (exact
// only when runtime.MemProfileRate is 1 for the allocations of interest).
// The profile describes the heap as of the last completed GC cycle, so a
// few are run first.
func heapOutside(pkg string) int64 {
	for range 3 {
		runtime.GC()
	}
	var recs []runtime.MemProfileRecord
	for {
		n, ok := runtime.MemProfile(recs, true)
		if ok {
			recs = recs[:n]
			break
		}
		recs = make([]runtime.MemProfileRecord, n+100)
	}
	var total int64
	for _, r := range recs {
		if r.InUseBytes() == 0 || stackHas(r.Stack(), pkg) {
			continue
		}
		total += r.InUseBytes()
	}
	return total
}

func stackHas(stk []uintptr, pkg string) bool {
	frames := runtime.CallersFrames(stk)
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, pkg) {
			return true
		}
		if !more {
			return false
		}
	}
}

// pidf is a PIDF document of one tuple, for the tests that run pa.
func pidf(entity, id, basic, note string) string {
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="%s">
  <tuple id="%s"><status><basic>%s</basic></status><contact>sip:%s@pc.example.com</contact></tuple>
  <note>%s</note>
</presence>`, entity, id, basic, id, note)
}

// pidf300 is a PIDF document of exactly 300 bytes, the figure
// for a publication, padded in its note.
func pidf300(uri string) string {
	doc := pidf(uri, "t1", "open", "at my desk")
	if len(doc) > 300 {
		panic(fmt.Sprintf("pidf300: %d bytes before padding", len(doc)))
	}
	return pidf(uri, "t1", "open", "at my desk"+strings.Repeat(".", 300-len(doc)))
}

// BenchmarkPublishBesideIdle is new PUBLISHes (pa, SQLite) from 64
// clients at once while a number of idle subscriptions are held (four to
// each of 10,000 presentities from a watcher URI each, as the bench's
// subscribe workload leaves them): what those subscriptions cost the
// collector, whose every cycle marks them. It runs at the daemon's
// gc_percent (50) and reports the process's CPU per PUBLISH and the
// collector's share of it (runtime/metrics: marking, assists, pauses),
// and the collector's CPU in a cycle forced before the load.
func BenchmarkPublishBesideIdle(b *testing.B) {
	// Answered transactions kept for Timer J (32 s) would be most of the
	// live heap, filling and draining through the measured window.
	savedJ, savedK := sip.Timer_J, sip.Timer_K
	sip.Timer_J, sip.Timer_K = 10*time.Millisecond, 10*time.Millisecond
	defer func() { sip.Timer_J, sip.Timer_K = savedJ, savedK }()
	for _, idle := range []int{0, 40000} {
		b.Run(fmt.Sprintf("idle=%d", idle), func(b *testing.B) {
			defer debug.SetGCPercent(debug.SetGCPercent(50))
			st, err := store.OpenSQLite(filepath.Join(b.TempDir(), "presenced.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			// The subscriptions are let go of once idle, as the daemon
			// does (store.idle_subscriptions), and measured so. The
			// server's own answered UDP transactions, kept for Timer J
			// (32 s), would be the setup's 50,000 requests held through
			// the measured cycles.
			f := startBare(b, server.Options{Store: st, Modules: []*extension.Module{extensiontest.Load(b, paPkg, nil)},
				IdleSubscriptions: time.Second})
			const clients, presentities = 64, 10000
			peers := make([]*siptest.Peer, clients)
			for i := range peers {
				peers[i] = siptest.NewPeer(b, "UDP", f.addr["UDP"])
			}
			// each runs op(p, j) for every j below n from the clients at once.
			each := func(n int, op func(p *siptest.Peer, j int)) {
				var wg sync.WaitGroup
				for c, p := range peers {
					wg.Go(func() {
						for j := c; j < n; j += clients {
							op(p, j)
						}
					})
				}
				wg.Wait()
			}
			uri := func(j int) string { return fmt.Sprintf("sip:idle%d@example.com", j) }
			if idle > 0 {
				each(presentities, func(p *siptest.Peer, j int) {
					if r := p.Publish("presence", uri(j), "application/pidf+xml", pidf300(uri(j))); r.StatusCode != 200 {
						b.Errorf("PUBLISH: %d", r.StatusCode)
					}
				})
				// As the bench's subscribe workload: a watcher URI each.
				each(idle, func(p *siptest.Peer, j int) {
					if r := p.Send(siptest.Request{Method: "SUBSCRIBE", URI: uri(j % presentities), Headers: []string{
						fmt.Sprintf("From: <sip:w%d@example.com>;tag=w%d", j, j), "To: <" + uri(j%presentities) + ">",
						"Call-ID: " + siptest.NewCallID(), "CSeq: 1 SUBSCRIBE", p.Contact(), "Event: presence",
						"Accept: application/pidf+xml", "Expires: 3600",
					}}); r.StatusCode != 200 {
						b.Errorf("SUBSCRIBE: %d", r.StatusCode)
						return
					}
					p.Notify()
				})
				for held, _ := server.Dialogs(f.srv); held > 0; held, _ = server.Dialogs(f.srv) {
					time.Sleep(50 * time.Millisecond)
				}
			}
			// A cycle forced on the quiet server marks what is held: its
			// CPU is the collector's price of the idle subscriptions
			// alone, without the load's garbage or timing. On one P, so
			// that no idle worker spins waiting for work to steal.
			runtime.GC()
			procs := runtime.GOMAXPROCS(1)
			const cycles = 10
			gc0 := gcCPU()
			for range cycles {
				runtime.GC()
			}
			quiet := gcCPU().total - gc0.total
			runtime.GOMAXPROCS(procs)
			n := presentities
			cpu, gc := processCPU(), gcCPU()
			ops := 0
			for b.Loop() {
				each(clients, func(p *siptest.Peer, j int) {
					u := uri(n + j)
					if r := p.Publish("presence", u, "application/pidf+xml", pidf300(u)); r.StatusCode != 200 {
						b.Errorf("PUBLISH: %d", r.StatusCode)
					}
				})
				n += clients
				ops += clients
			}
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(ops), "cpu-µs/op")
			b.ReportMetric(float64(quiet.Microseconds())/cycles, "gc-cpu-µs/cycle")
			gcAfter := gcCPU()
			b.ReportMetric(float64((gcAfter.total-gc.total).Microseconds())/float64(ops), "gc-cpu-µs/op")
			b.ReportMetric(float64((gcAfter.idle-gc.idle).Microseconds())/float64(ops), "gc-idle-µs/op")
		})
	}
}

// gcCPU is the CPU time the collector has used in this process
// (runtime/metrics): in total (marking by its workers and by assists,
// pauses), and of that by its idle workers, which mark on a core nothing
// else of the process wanted, so that their share follows the machine's
// other load as much as the heap.
func gcCPU() (c struct{ total, idle time.Duration }) {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/gc/mark/idle:cpu-seconds"}}
	metrics.Read(s)
	c.total = time.Duration(s[0].Value.Float64() * float64(time.Second))
	c.idle = time.Duration(s[1].Value.Float64() * float64(time.Second))
	return c
}

// startBare is startFixture on UDP alone, with the server's answered
// transactions kept 10 ms (server.SetTimerJ) instead of Timer J.
func startBare(b *testing.B, opt server.Options) *fixture {
	opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opt.Listen = []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}}
	opt.Subscription, opt.Publication = server.Bounds{Min: 1, Max: 3600}, server.Bounds{Min: 1, Max: 3600}
	srv, err := server.New(opt)
	if err != nil {
		b.Fatal(err)
	}
	server.SetTimerJ(srv, 10*time.Millisecond)
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	_, hp, _ := strings.Cut(srv.Addrs()[0], ":")
	return &fixture{srv: srv, store: opt.Store, addr: map[string]string{"UDP": hp}, mods: opt.Modules}
}
