package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/jackc/pgx/v5"

	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/postgres"
	"github.com/presenced/presenced/internal/store/postgres/pgtest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// TestMain stops the PostgreSQL server of the tests that share one
// database between nodes, if one was started.
func TestMain(m *testing.M) { pgtest.Main(m) }

// startNodes starts n servers with the presence module on one PostgreSQL
// database: the nodes of a cluster (docs/cluster.md), in one process. It
// returns them and the database's URL.
func startNodes(t testing.TB, n int) ([]*fixture, string) {
	t.Helper()
	dsn := pgtest.DSN(t)
	var nodes []*fixture
	for range n {
		st, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() }) // after the server's Close: cleanups run last first
		nodes = append(nodes, start(t, st, extensiontest.Load(t, paPkg, nil)))
	}
	return nodes, dsn
}

// Three nodes on one database, a watcher of carol on each: a PUBLISH to
// any node reaches every watcher, whichever node holds it, with the state
// composed of every node's publications (the change feed). A SUBSCRIBE to
// a node that holds nothing of a presentity published on another (dave),
// and that has heard of that write already and let it pass, gets it in
// its first NOTIFY.
func TestPublishReachesWatchersOnEveryNode(t *testing.T) {
	nodes, _ := startNodes(t, 3)
	const carol = "sip:carol@example.com"
	var watchers []*siptest.Peer
	for _, n := range nodes {
		w := watching(t, n, carol)
		watchers = append(watchers, w)
	}
	var ids []string
	for i, n := range nodes {
		dave := fmt.Sprintf("sip:dave%d@example.com", i)
		res := n.peer(t, "UDP").Publish("presence", dave, "application/pidf+xml", pidf(dave, "d", "open", "here"), "Expires: 600")
		siptest.WantCode(t, res, 200)
		id := fmt.Sprintf("from-node-%d", i)
		ids = append(ids, id)
		res = n.peer(t, "UDP").Publish("presence", carol, "application/pidf+xml", pidf(carol, id, "open", id), "Expires: 600")
		siptest.WantCode(t, res, 200)
		for j, w := range watchers {
			notifiedOf(t, w, fmt.Sprintf("watcher on node %d, after the PUBLISH to node %d", j, i), ids...)
		}
		// Every node has heard of carol's write, so of dave's before it.
		j := (i + 1) % len(nodes)
		w := nodes[j].peer(t, "UDP")
		_, res = w.Subscribe("presence", dave, "Expires: 600")
		siptest.WantCode(t, res, 200)
		if body := string(w.Notify().Body()); !strings.Contains(body, "<basic>open</basic>") {
			t.Fatalf("first NOTIFY on node %d of %s, published on node %d:\n%s", j, dave, i, body)
		}
	}
}

// A node whose feed session is cut (a database restart, the network)
// misses what is written meanwhile, and once it listens again reads every
// presentity it holds: its watcher gets a PUBLISH made on another node
// during the cut.
func TestCutFeedIsCaughtUp(t *testing.T) {
	nodes, dsn := startNodes(t, 2)
	const carol = "sip:carol@example.com"
	w := watching(t, nodes[0], carol)

	ctx := context.Background()
	conn := connect(t, dsn)
	listening := func() (n int) {
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	// The sessions go at once; the nodes dial again a second later.
	for deadline := time.Now().Add(time.Second); listening() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	res := nodes[1].peer(t, "UDP").Publish("presence", carol, "application/pidf+xml", pidf(carol, "during-cut", "open", "x"), "Expires: 600")
	siptest.WantCode(t, res, 200)
	notifiedOf(t, w, "watcher on the cut node", "during-cut")
}

// While the database refuses a node (its connections cut, new ones not
// allowed: a restart, a partition), every request that would change state
// is answered 503 with Retry-After and stores nothing; once it is back
// the node serves again, and what was refused never shows.
func TestDatabaseOutageIs503(t *testing.T) {
	nodes, dsn := startNodes(t, 1)
	f := nodes[0]
	const carol = "sip:carol@example.com"
	p := f.peer(t, "UDP")
	siptest.WantCode(t, p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "before")), 200)

	// The database is reached through another one on the same server, so
	// that cutting this one's sessions spares the admin's.
	ctx := context.Background()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	admin := connect(t, u.String())
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`ALTER DATABASE ` + db + ` ALLOW_CONNECTIONS false`)
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '` + db + `'`)
	for _, res := range []*sip.Response{
		p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t2", "open", "during")),
		func() *sip.Response {
			_, res := f.peer(t, "UDP").Subscribe("presence", carol, "Expires: 600")
			return res
		}(),
	} {
		siptest.WantCode(t, res, 503)
		if res.GetHeader("Retry-After") == nil {
			t.Fatalf("503 without Retry-After:\n%s", res)
		}
	}

	exec(`ALTER DATABASE ` + db + ` ALLOW_CONNECTIONS true`)
	w := f.peer(t, "UDP")
	_, res := w.Subscribe("presence", carol, "Expires: 600")
	siptest.WantCode(t, res, 200)
	if body := string(w.Notify().Body()); !strings.Contains(body, "before") || strings.Contains(body, "during") {
		t.Fatalf("after the outage:\n%s", body)
	}
	siptest.WantCode(t, p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t3", "open", "after")), 200)
	notifiedOf(t, w, "watcher after the outage", "after")
}

// A node whose lease ran out without another node taking its dialogs
// (here: made to run out in the database; in life, the node or its link
// paused longer than a lease) finds it lost at its next renewal, drops
// every dialog, joins again and gets back those nobody took: its watcher
// is sent the state again in its dialog, CSeq rising, and hears the next
// PUBLISH.
func TestLostLeaseKeepsDialogsNobodyTook(t *testing.T) {
	nodes, dsn := startNodes(t, 1)
	f := nodes[0]
	const carol = "sip:carol@example.com"
	w := f.peer(t, "UDP")
	sub, res := w.Subscribe("presence", carol, "Expires: 600")
	siptest.WantCode(t, res, 200)
	last := w.Notify().CSeq().SeqNo

	ctx := context.Background()
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx, `UPDATE nodes SET lease_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	n := w.NotifyWithin(3 * server.DefaultLease)
	if n == nil || siptest.Header(n, "Call-ID") != sub.CallID || n.CSeq().SeqNo <= last {
		t.Fatalf("after the lease was lost (CSeq before %d): %v", last, n)
	}
	var owners int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM nodes`).Scan(&owners); err != nil || owners != 1 {
		t.Fatalf("%d epochs in nodes, want the node's new one: %v", owners, err)
	}
	res = f.peer(t, "UDP").Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "after-rejoin"))
	siptest.WantCode(t, res, 200)
	notifiedOf(t, w, "watcher after the rejoin", "after-rejoin")
}

// connect opens a connection to the database at dsn, closed when t ends.
func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// watching is a peer subscribed to uri's presence on f, its first NOTIFY
// read.
func watching(t testing.TB, f *fixture, uri string) *siptest.Peer {
	t.Helper()
	w := f.peer(t, "UDP")
	_, res := w.Subscribe("presence", uri, "Expires: 600")
	siptest.WantCode(t, res, 200)
	w.Notify()
	return w
}

// notifiedOf waits for a NOTIFY to w whose body holds every id.
func notifiedOf(t testing.TB, w *siptest.Peer, what string, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(siptest.Timeout)
	for {
		n := w.NotifyWithin(time.Until(deadline))
		if n == nil {
			t.Fatalf("%s: no NOTIFY with %v", what, ids)
		}
		all := true
		for _, id := range ids {
			all = all && bytes.Contains(n.Body(), []byte(id))
		}
		if all {
			return
		}
	}
}

// BenchmarkNotifyAcrossNodes is a PUBLISH (a modify of one publication)
// to a node and the NOTIFY it causes to a watcher held by the same node
// or by another on the same database: what the change feed adds to what
// a watcher waits. ns/op is both; µs-notify-after-200 is the NOTIFY's
// delay after the 200 came back.
func BenchmarkNotifyAcrossNodes(b *testing.B) {
	for _, where := range []string{"same", "other"} {
		b.Run(where, func(b *testing.B) {
			nodes, _ := startNodes(b, 2)
			const carol = "sip:carol@example.com"
			held := nodes[0]
			if where == "other" {
				held = nodes[1]
			}
			w := held.peer(b, "UDP")
			if _, res := w.Subscribe("presence", carol, "Expires: 3600"); res.StatusCode != 200 {
				b.Fatalf("SUBSCRIBE: %d", res.StatusCode)
			}
			w.Notify()
			p := nodes[0].peer(b, "UDP")
			res := p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t", "open", "first"), "Expires: 3600")
			if res.StatusCode != 200 {
				b.Fatalf("PUBLISH: %d", res.StatusCode)
			}
			etag := res.GetHeader("SIP-ETag").Value()
			notifiedOf(b, w, "watcher", "first")
			var after time.Duration
			b.ResetTimer()
			for i := range b.N {
				note := fmt.Sprintf("note%d", i)
				res := p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t", "open", note),
					"Expires: 3600", "SIP-If-Match: "+etag)
				acked := time.Now()
				if res.StatusCode != 200 {
					b.Fatalf("PUBLISH: %d", res.StatusCode)
				}
				etag = res.GetHeader("SIP-ETag").Value()
				notifiedOf(b, w, "watcher", note+"<")
				after += time.Since(acked)
			}
			b.ReportMetric(float64(after.Microseconds())/float64(b.N), "µs-notify-after-200")
		})
	}
}

// Two nodes on one database, each with a watcher of one presentity, take
// new PUBLISHes for it at once, each node from its own stale copy of the
// presentity's state. Every one acknowledged is in the stored state when
// they are done: a node whose write lost the race (store.ErrConflict)
// read the other's state and ran the module again, or answered 500 with
// Retry-After and wrote nothing. Without the version check the nodes
// overwrite each other's publications in the state.
func TestTwoNodesLoseNoPublication(t *testing.T) {
	nodes, _ := startNodes(t, 2)
	const carol = "sip:carol@example.com"
	done := make(chan struct{})
	var drained sync.WaitGroup
	for _, n := range nodes {
		w := watching(t, n, carol)
		drained.Add(1)
		go func() { // the NOTIFYs every change sends, read so none waits
			defer drained.Done()
			for {
				select {
				case <-done:
					return
				default:
					w.NotifyWithin(50 * time.Millisecond)
				}
			}
		}()
	}
	defer func() { close(done); drained.Wait() }()

	const peersPerNode, each = 4, 8
	var mu sync.Mutex
	acked := map[string]string{} // ETag -> the tuple id published
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i, n := range nodes {
		for p := range peersPerNode {
			pub := n.peer(t, "UDP")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range each {
					id := fmt.Sprintf("n%dp%dk%d", i, p, k)
					res := pub.Publish("presence", carol, "application/pidf+xml", pidf(carol, id, "open", id), "Expires: 600")
					mu.Lock()
					codes[res.StatusCode]++
					switch {
					case res.StatusCode == 200:
						acked[res.GetHeader("SIP-ETag").Value()] = id
					case res.StatusCode != 500 || res.GetHeader("Retry-After") == nil:
						t.Errorf("PUBLISH %s: %d %s", id, res.StatusCode, res.Reason)
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("answers: %v", codes)
	if len(acked) == 0 {
		t.Fatal("no PUBLISH acknowledged")
	}

	snap, err := nodes[0].store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// A refused PUBLISH wrote nothing: the stored publications are the
	// acknowledged ones.
	pubID := map[string]string{}
	for _, p := range snap.Publications {
		pubID[p.ETag] = p.ID
	}
	if len(snap.Publications) != len(acked) {
		t.Errorf("%d publications stored, %d acknowledged", len(snap.Publications), len(acked))
	}
	var state []byte
	for _, r := range snap.Resources {
		if r.Event == "presence" && r.Resource == carol {
			state = r.State
		}
	}
	lost := 0
	for etag, tuple := range acked {
		id, ok := pubID[etag]
		if !ok {
			t.Errorf("acknowledged publication %s (ETag %s) not stored", tuple, etag)
			continue
		}
		if !inState(state, id) {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged publications missing from the stored state", lost, len(acked))
	}
}

// A node whose copy of a presentity's state is stale (another node on
// the same store published since) has its PUBLISH conflict, reads the
// stored state and runs the module again: both publications are in the
// state, and the 200 came after that. Two servers on one Memory store
// are two nodes without a database.
func TestConflictedPublishIsComputedAgain(t *testing.T) {
	mem := store.NewMemory()
	a, b := start(t, mem, extensiontest.Load(t, paPkg, nil)), start(t, mem, extensiontest.Load(t, paPkg, nil))
	const carol = "sip:carol@example.com"
	siptest.WantCode(t, a.peer(t, "UDP").Publish("presence", carol, "application/pidf+xml", pidf(carol, "ta", "open", "on a")), 200)
	siptest.WantCode(t, b.peer(t, "UDP").Publish("presence", carol, "application/pidf+xml", pidf(carol, "tb", "open", "on b")), 200)
	snap, err := mem.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Publications) != 2 || len(snap.Resources) != 1 {
		t.Fatalf("stored: %+v", snap)
	}
	for _, p := range snap.Publications {
		if !inState(snap.Resources[0].State, p.ID) {
			t.Errorf("publication %s missing from the stored state", p.ID)
		}
	}
}

// inState reports whether the presence module's state blob holds the
// publication with this id. The blob is pubstate's, which the host's tests
// may not import (TestLayout); an id is 16 characters of a time and
// random bits, found in a blob of a few publications only as itself.
func inState(state []byte, id string) bool { return bytes.Contains(state, []byte(id)) }

// conflicting is a store whose every write of a resource state conflicts,
// as if other nodes always wrote it first.
type conflicting struct {
	store.Store
	tries atomic.Int32
}

func (c *conflicting) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Resources) > 0 {
		c.tries.Add(1)
		return fmt.Errorf("commit not written: %w", store.ErrConflict)
	}
	return c.Store.Commit(ctx, b)
}

// A change that keeps conflicting is tried four times (three retries)
// and answered 500 with Retry-After, nothing of it applied.
func TestConflictingTooOftenIs500RetryAfter(t *testing.T) {
	st := &conflicting{Store: store.NewMemory()}
	f := start(t, st, extensiontest.Load(t, paPkg, nil))
	const carol = "sip:carol@example.com"
	res := f.peer(t, "UDP").Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "here"))
	siptest.WantCode(t, res, 500)
	if res.GetHeader("Retry-After") == nil {
		t.Fatal("500 without Retry-After")
	}
	if n := st.tries.Load(); n != 4 {
		t.Fatalf("%d commits tried, want 4", n)
	}
	if snap, err := st.Load(context.Background()); err != nil || len(snap.Publications)+len(snap.Resources) != 0 {
		t.Fatalf("after the refusal the store holds %+v (%v)", snap, err)
	}
	// Nothing was applied: a watcher is sent no tuple of it.
	w := f.peer(t, "UDP")
	_, sres := w.Subscribe("presence", carol, "Expires: 60")
	siptest.WantCode(t, sres, 200)
	if body := string(w.Notify().Body()); strings.Contains(body, "t1") {
		t.Fatalf("refused publication rendered:\n%s", body)
	}
}

// A node that dies leaves its publications in the store, where no timer
// of its own removes them; another node removes each once its expiry is
// a lease past, through the one change path, and its watchers are told:
// a busy lamp lit on the dead node goes out. The dead node is closed
// before its publication's expiry: its timer never fires, as with a kill.
func TestDeadNodesPublicationsExpire(t *testing.T) {
	nodes, _ := startNodes(t, 2)
	const carol = "sip:carol@example.com"
	w := watching(t, nodes[1], carol)
	const secs = 3
	res := nodes[0].peer(t, "UDP").Publish("presence", carol, "application/pidf+xml",
		pidf(carol, "t1", "open", "on-the-phone"), fmt.Sprintf("Expires: %d", secs))
	siptest.WantCode(t, res, 200)
	notifiedOf(t, w, "watcher on node 1, after the PUBLISH to node 0", "on-the-phone")
	nodes[0].srv.Close()
	died := time.Now()

	// The expiry, a lease past it, and the sweep once per lease.
	bound := secs*time.Second + 2*server.DefaultLease + time.Second
	for {
		n := w.NotifyWithin(time.Until(died.Add(bound)))
		if n == nil {
			t.Fatalf("no NOTIFY without the dead node's publication within %v", bound)
		}
		if !bytes.Contains(n.Body(), []byte("on-the-phone")) {
			if since := time.Since(died); since < secs*time.Second {
				t.Fatalf("publication gone after %v, before its expiry", since)
			}
			return
		}
	}
}

// A publication taken by one node is refreshed, modified and removed
// through another, as a proxy routing its client elsewhere sends them:
// each node finds it in the store by its ETag. The node that took it
// does not remove it at the expiry it knew (it was refreshed since on
// the other), and an ETag gone stale is still 412.
func TestPublicationFollowsRouting(t *testing.T) {
	nodes, _ := startNodes(t, 2)
	const carol = "sip:carol@example.com"
	w := watching(t, nodes[1], carol)
	publish := func(f *fixture, code int, ctype, body string, extra ...string) string {
		t.Helper()
		res := f.peer(t, "UDP").Publish("presence", carol, ctype, body, extra...)
		siptest.WantCode(t, res, code)
		return siptest.Header(res, "SIP-ETag")
	}
	const ct = "application/pidf+xml"
	e1 := publish(nodes[0], 200, ct, pidf(carol, "t1", "open", "first"), "Expires: 2")
	notifiedOf(t, w, "watcher on node 1, after the PUBLISH to node 0", "first")
	e2 := publish(nodes[1], 200, "", "", "SIP-If-Match: "+e1, "Expires: 600")
	if e2 == "" || e2 == e1 {
		t.Fatalf("refresh on node 1: ETag %q after %q", e2, e1)
	}
	w.Quiet(3 * time.Second) // past the expiry node 0 knew: nothing removed
	e3 := publish(nodes[0], 200, ct, pidf(carol, "t1", "closed", "second"), "SIP-If-Match: "+e2, "Expires: 600")
	notifiedOf(t, w, "watcher on node 1, after the modify on node 0", "second")
	publish(nodes[1], 412, "", "", "SIP-If-Match: "+e2, "Expires: 0")
	publish(nodes[1], 200, "", "", "SIP-If-Match: "+e3, "Expires: 0")
	n := w.NotifyWithin(siptest.Timeout)
	if n == nil || bytes.Contains(n.Body(), []byte("second")) {
		t.Fatalf("after the removal on node 1: %v", n)
	}
}

// Two nodes modify one publication each of a presentity with many
// watchers on the first node, without waiting for the NOTIFYs: each
// PUBLISH is answered before its rendering, a node writing from a state
// the other replaced computes again (store.ErrConflict), and every
// watcher ends with both last states.
func TestCrowdGetsEveryNodesLastState(t *testing.T) {
	nodes, _ := startNodes(t, 2)
	const carol = "sip:carol@example.com"
	_, subs := crowd(t, nodes[0], carol, server.RenderApart)
	pubs := make([]*siptest.Peer, len(nodes))
	etags := make([]string, len(nodes))
	const last = 5
	for i := 0; i <= last; i++ {
		for j, n := range nodes {
			if pubs[j] == nil {
				pubs[j] = n.peer(t, "UDP")
			}
			id, extra := fmt.Sprintf("%c%d", 'a'+j, i), []string{"Expires: 600"}
			if etags[j] != "" {
				extra = append(extra, "SIP-If-Match: "+etags[j])
			}
			res := pubs[j].Publish("presence", carol, "application/pidf+xml", pidf(carol, id, "open", id), extra...)
			siptest.WantCode(t, res, 200)
			etags[j] = siptest.Header(res, "SIP-ETag")
		}
	}
	for _, sub := range subs {
		for {
			body := sub.Peer.NotifyIn(sub.CallID).Body()
			if bytes.Contains(body, []byte(fmt.Sprintf("a%d", last))) && bytes.Contains(body, []byte(fmt.Sprintf("b%d", last))) {
				break
			}
		}
	}
}
