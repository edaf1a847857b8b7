package server_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/postgres"
	"github.com/presenced/presenced/internal/store/postgres/pgtest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// TestMain stops the PostgreSQL server of the tests that share one
// database between nodes, if one was started.
func TestMain(m *testing.M) { pgtest.Main(m) }

// startNodes starts n servers with the presence module on one PostgreSQL
// database: the nodes of a cluster (docs/cluster.md), in one process.
func startNodes(t *testing.T, n int) []*fixture {
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
	return nodes
}

// Two nodes on one database, each with a watcher of one presentity, take
// new PUBLISHes for it at once, each node from its own stale copy of the
// presentity's state. Every one acknowledged is in the stored state when
// they are done: a node whose write lost the race (store.ErrConflict)
// read the other's state and ran the module again, or answered 500 with
// Retry-After and wrote nothing. Without the version check the nodes
// overwrite each other's publications in the state.
func TestTwoNodesLoseNoPublication(t *testing.T) {
	nodes := startNodes(t, 2)
	const carol = "sip:carol@example.com"
	done := make(chan struct{})
	var drained sync.WaitGroup
	for _, n := range nodes {
		w := n.peer(t, "UDP")
		_, res := w.Subscribe("presence", carol, "Expires: 600")
		siptest.WantCode(t, res, 200)
		w.Notify()
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
