package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/logtest"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// failingStore refuses the commits its predicate picks while failing is
// set: a full disk, a held lock, a dead database.
type failingStore struct {
	store.Store
	failing atomic.Bool
	only    func(*store.Batch) bool // nil: every commit
	refused atomic.Int64
}

var errDiskFull = errors.New("disk full (injected)")

func (f *failingStore) Commit(ctx context.Context, b *store.Batch) error {
	if f.failing.Load() && (f.only == nil || f.only(b)) {
		f.refused.Add(1)
		return errDiskFull
	}
	return f.Store.Commit(ctx, b)
}

// While the store refuses, nothing changes and nothing is said: a PUBLISH,
// an unsubscribe and an operator's removal are refused (500 or an error),
// an expiry waits, no NOTIFY leaves. Once the store is back, a restarted
// server has every subscription, and no CSeq is used twice.
func TestFailingStoreChangesNothing(t *testing.T) {
	st := &failingStore{Store: store.NewMemory()}
	mod := echo(t)
	f := start(t, st, mod)
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	r := p.Publish("echo", alice, "text/plain", "v1")
	siptest.WantCode(t, r, 200)
	etag := siptest.Header(r, "SIP-ETag")
	subA, r := w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	subB, r := w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	subC, r := w.Subscribe("echo", alice, "Expires: 2")
	siptest.WantCode(t, r, 200)
	last := map[string]uint32{}
	for _, sub := range []*siptest.Subscription{subA, subB, subC} {
		last[sub.CallID] = w.NotifyIn(sub.CallID).CSeq().SeqNo
	}

	st.failing.Store(true)
	r = p.Publish("echo", alice, "text/plain", "v2", "SIP-If-Match: "+etag)
	if r.StatusCode != 500 || !strings.Contains(siptest.Header(r, "Warning"), "state could not be stored") {
		t.Fatalf("PUBLISH with the store failing: %d %s", r.StatusCode, siptest.Header(r, "Warning"))
	}
	if r := subA.Again("Expires: 0"); r.StatusCode != 500 {
		t.Fatalf("unsubscribe with the store failing: %d", r.StatusCode)
	}
	var id string
	for _, s := range f.srv.Subscriptions(server.Filter{}) {
		if tagOfID(s.ID) == subB.ToTag {
			id = s.ID
		}
	}
	if err := f.srv.Terminate(id, "deactivated"); err == nil {
		t.Fatal("an operator's removal succeeded with the store failing")
	}
	w.Quiet(3 * time.Second) // subC's expiry passes too
	if n := len(f.srv.Subscriptions(server.Filter{})); n != 3 {
		t.Fatalf("%d live subscriptions after refused removals, want 3", n)
	}
	f.srv.Close()

	st.failing.Store(false)
	start(t, st, mod)
	// every dialog is told its state again (subC, which expired meanwhile,
	// then ends), each CSeq above any sent before the restart
	seen := map[string]bool{}
	for len(seen) < 3 {
		n := w.Notify()
		call := siptest.Header(n, "Call-ID")
		before, ok := last[call]
		if !ok {
			t.Fatalf("NOTIFY in an unknown dialog:\n%s", n)
		}
		if n.CSeq().SeqNo <= before {
			t.Fatalf("CSeq %d after %d in dialog %s: used twice", n.CSeq().SeqNo, before, call)
		}
		if string(n.Body()) != "v1" && !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "terminated") {
			t.Fatalf("after the restart:\n%s", n)
		}
		last[call], seen[call] = n.CSeq().SeqNo, true
	}
}

// A NOTIFY never leaves with a CSeq the store has not recorded: when the
// reservation of the next block of CSeqs fails, the NOTIFY waits, and
// leaves once the store takes it.
func TestNotifyWaitsForItsCSeqReservation(t *testing.T) {
	st := &failingStore{Store: store.NewMemory(), only: func(b *store.Batch) bool { return len(b.NotifyCSeqs) > 0 }}
	f := start(t, st, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	r := p.Publish("echo", alice, "text/plain", "v0")
	siptest.WantCode(t, r, 200)
	etag := siptest.Header(r, "SIP-ETag")
	_, r = w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	w.Notify()
	// CSeqs 1 to 32 came with the subscription; 33 needs a reservation
	for i := 2; i <= cseqBlock; i++ {
		r := p.Publish("echo", alice, "text/plain", fmt.Sprintf("v%d", i), "SIP-If-Match: "+etag)
		siptest.WantCode(t, r, 200)
		etag = siptest.Header(r, "SIP-ETag")
		if n := w.Notify(); n.CSeq().SeqNo != uint32(i) {
			t.Fatalf("NOTIFY CSeq %d, want %d", n.CSeq().SeqNo, i)
		}
	}
	st.failing.Store(true)
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "v33", "SIP-If-Match: "+etag), 200)
	w.Quiet(1500 * time.Millisecond)
	if st.refused.Load() == 0 {
		t.Fatal("no reservation was tried")
	}
	st.failing.Store(false)
	n := w.Notify()
	snap, _ := st.Load(t.Context())
	if n.CSeq().SeqNo != cseqBlock+1 || string(n.Body()) != "v33" || snap.Subscriptions[0].LocalCSeq < n.CSeq().SeqNo {
		t.Fatalf("NOTIFY CSeq %d (store has %d):\n%s", n.CSeq().SeqNo, snap.Subscriptions[0].LocalCSeq, n)
	}
}

// A subscription ended by its watcher or by an operator stays ended after
// a restart: its deletion was committed before the 200 or the operator's
// answer.
func TestEndedSubscriptionStaysGone(t *testing.T) {
	st := store.NewMemory()
	mod := echo(t)
	f := start(t, st, mod)
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "v1"), 200)
	subA, r := w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	subB, r := w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	w.NotifyIn(subA.CallID)
	w.NotifyIn(subB.CallID)
	siptest.WantCode(t, subA.Again("Expires: 0"), 200)
	for _, s := range f.srv.Subscriptions(server.Filter{}) {
		if tagOfID(s.ID) == subB.ToTag {
			if err := f.srv.Terminate(s.ID, "deactivated"); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.NotifyIn(subA.CallID) // the final NOTIFYs
	w.NotifyIn(subB.CallID)
	f.srv.Close()
	second := start(t, st, mod)
	if subs := second.srv.Subscriptions(server.Filter{}); len(subs) != 0 {
		t.Fatalf("ended subscriptions came back: %+v", subs)
	}
	w.Quiet(500 * time.Millisecond)
}

// tagOfID is the local tag a subscription id starts with.
func tagOfID(id string) string {
	t, _, _ := strings.Cut(id, ".")
	return t
}

// A full disk fails every request: its "store commit failed" lines are
// held to a few a second, like every other refusal's, and the rest
// counted.
func TestStoreFailuresDoNotFloodTheLog(t *testing.T) {
	st := &failingStore{Store: store.NewMemory()}
	var out logtest.Buffer
	f := startLogging(t, st, slog.New(slog.NewTextHandler(&out, nil)), echo(t))
	p := f.peer(t, "UDP")
	st.failing.Store(true)
	const n = 60
	first := time.Now().Unix()
	for i := 0; i < n; i++ {
		siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "v"), 500)
	}
	time.Sleep(1100 * time.Millisecond) // the next second's line says how many were held back
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "v"), 500)
	// Five lines in each second the failures spanned: two on a quiet
	// machine, more on a loaded one, never one per failure.
	seconds := time.Now().Unix() - first + 1
	logged := strings.Count(out.String(), `msg="store commit failed"`)
	if logged == 0 || int64(logged) > 5*seconds || logged >= n {
		t.Fatalf("%d \"store commit failed\" lines for %d failed commits:\n%s", logged, n+1, out.String())
	}
	if !strings.Contains(out.String(), "suppressed") {
		t.Fatalf("the lines held back are not counted:\n%s", out.String())
	}
}

// crowd subscribes n watchers to uri's presence, from a few peers, and
// reads each one's first NOTIFY.
func crowd(t *testing.T, f *fixture, uri string, n int) ([]*siptest.Peer, []*siptest.Subscription) {
	t.Helper()
	return crowdOf(t, f, "presence", uri, n)
}

// crowdOf is crowd for the package of event.
func crowdOf(t *testing.T, f *fixture, event, uri string, n int) ([]*siptest.Peer, []*siptest.Subscription) {
	t.Helper()
	peers := make([]*siptest.Peer, 8)
	for i := range peers {
		peers[i] = f.peer(t, "UDP")
	}
	subs := make([]*siptest.Subscription, n)
	for i := range subs {
		sub, r := peers[i%len(peers)].Subscribe(event, uri, "Expires: 600")
		siptest.WantCode(t, r, 200)
		subs[i] = sub
	}
	for _, sub := range subs {
		sub.Peer.NotifyIn(sub.CallID)
	}
	return peers, subs
}

// rendersApart picks the commit of a rendering for watchers after the
// change it reports: per-watcher states, no publication or resource state.
func rendersApart(b *store.Batch) bool {
	return len(b.SubscriptionStates) > 0 && len(b.Publications) == 0 && len(b.Resources) == 0
}

// A PUBLISH to a presentity with many watchers is answered once the
// publication and the composed state are committed, before the
// watchers' documents are rendered and their states committed; the
// NOTIFYs follow the 200, each with the new state.
func TestPublishAnsweredBeforeItsWatchersAreRendered(t *testing.T) {
	st := &heldStore{Store: store.NewMemory(), only: rendersApart, held: make(chan struct{}), release: make(chan struct{})}
	f := start(t, st, extensiontest.Load(t, paPkg, nil))
	p := f.peer(t, "UDP")
	r := p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "v1"))
	siptest.WantCode(t, r, 200)
	peers, subs := crowd(t, f, carol, server.RenderApart)

	r = p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "v2"), "SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
	siptest.WantCode(t, r, 200) // while the rendering's commit may be held
	select {
	case <-st.held:
	case <-time.After(siptest.Timeout):
		t.Fatal("the watchers' states were never committed")
	}
	for _, w := range peers {
		w.Quiet(20 * time.Millisecond) // nothing leaves before its state is kept
	}
	close(st.release)
	for _, sub := range subs {
		if n := sub.Peer.NotifyIn(sub.CallID); n.CSeq().SeqNo != 2 || !strings.Contains(string(n.Body()), "v2") {
			t.Fatalf("NOTIFY after the PUBLISH:\n%s", n)
		}
	}
}

// A publisher that modifies its publication as soon as each 200 arrives
// runs ahead of the renderings: some states may be rendered together,
// but each watcher's NOTIFYs carry rising versions and the last is the
// last state published, sent once.
func TestPublishesAheadOfTheirRenderingsLoseNoState(t *testing.T) {
	f := start(t, nil, extensiontest.Load(t, paPkg, nil))
	p := f.peer(t, "UDP")
	r := p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "v0"))
	siptest.WantCode(t, r, 200)
	peers, subs := crowd(t, f, carol, server.RenderApart)
	const last = 6
	for i := 1; i <= last; i++ {
		r = p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", fmt.Sprintf("v%d", i)),
			"SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
		siptest.WantCode(t, r, 200)
	}
	for _, sub := range subs {
		seen := 0
		for seen < last {
			n := sub.Peer.NotifyIn(sub.CallID)
			v := 0
			if _, err := fmt.Sscanf(string(n.Body()[strings.Index(string(n.Body()), "<note>"):]), "<note>v%d<", &v); err != nil || v <= seen {
				t.Fatalf("NOTIFY after v%d:\n%s", seen, n)
			}
			seen = v
		}
	}
	for _, w := range peers {
		w.Quiet(50 * time.Millisecond)
	}
}

// A crowd rendered apart from the change (mwi, one of the pubstate
// packages) is sent nothing when the change leaves what it sees as it
// was: here the removal of a publication older than the latest, which
// changes the state but not the summary. The next real change reaches
// every watcher with the next CSeq: nothing was sent in between.
func TestCrowdNotSentWhatItWasSent(t *testing.T) {
	const ctype = "application/simple-message-summary"
	f := start(t, nil, extensiontest.Load(t, "github.com/presenced/presenced/extensions/mwi", nil))
	vm, other := f.peer(t, "UDP"), f.peer(t, "UDP")
	summary := func(n int) string { return fmt.Sprintf("Messages-Waiting: yes\r\nVoice-Message: %d/0\r\n", n) }
	old := other.Publish("message-summary", bob, ctype, summary(1))
	siptest.WantCode(t, old, 200)
	peers, subs := crowdOf(t, f, "message-summary", bob, server.RenderApart)
	r := vm.Publish("message-summary", bob, ctype, summary(2))
	siptest.WantCode(t, r, 200)
	for _, sub := range subs {
		if n := sub.Peer.NotifyIn(sub.CallID); string(n.Body()) != summary(2) || n.CSeq().SeqNo != 2 {
			t.Fatalf("NOTIFY of the newer summary:\n%s", n)
		}
	}
	etag := siptest.Header(r, "SIP-ETag")
	r = other.Publish("message-summary", bob, "", "", "Expires: 0", "SIP-If-Match: "+siptest.Header(old, "SIP-ETag"))
	siptest.WantCode(t, r, 200)
	siptest.WantCode(t, vm.Publish("message-summary", bob, ctype, summary(3), "SIP-If-Match: "+etag), 200)
	for _, sub := range subs {
		if n := sub.Peer.NotifyIn(sub.CallID); string(n.Body()) != summary(3) || n.CSeq().SeqNo != 3 {
			t.Fatalf("after the older publication went, the next NOTIFY is the next summary with CSeq 3:\n%s", n)
		}
	}
	for _, p := range peers {
		p.Quiet(10 * time.Millisecond)
	}
}

// A rendering for a crowd lets go of the presentity's lock while its
// commit is written and its NOTIFYs are queued: the next PUBLISH is
// answered meanwhile, but a change of a watcher (here an unsubscribe)
// waits for the rendering to end, so each dialog's NOTIFYs keep the order
// of the changes: the rendered state, then the final NOTIFY, CSeqs
// rising; and the crowd gets both states, each once, in order.
func TestPublishGoesAheadOfARenderingsCommit(t *testing.T) {
	st := &heldStore{Store: store.NewMemory(), only: rendersApart, held: make(chan struct{}), release: make(chan struct{})}
	f := start(t, st, extensiontest.Load(t, paPkg, nil))
	release := sync.OnceFunc(func() { close(st.release) })
	t.Cleanup(release) // before the server's: a failed test does not hang
	p, q := f.peer(t, "UDP"), f.peer(t, "UDP")
	r := p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "v1"))
	siptest.WantCode(t, r, 200)
	leaving, res := q.Subscribe("presence", carol, "Expires: 600")
	siptest.WantCode(t, res, 200)
	q.NotifyIn(leaving.CallID)
	peers, subs := crowd(t, f, carol, server.RenderApart)

	r = p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "v2"), "SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
	siptest.WantCode(t, r, 200)
	select {
	case <-st.held:
	case <-time.After(siptest.Timeout):
		t.Fatal("the watchers' states were never committed")
	}
	// The rendering of v2 is held in its commit.
	r = p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "v3"), "SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
	siptest.WantCode(t, r, 200)
	unsubscribed := make(chan int, 1)
	go func() { unsubscribed <- leaving.Again("Expires: 0").StatusCode }()
	select {
	case code := <-unsubscribed:
		t.Fatalf("unsubscribe answered %d while a rendering owned the watchers", code)
	case <-time.After(100 * time.Millisecond):
	}
	for _, w := range peers {
		w.Quiet(20 * time.Millisecond) // nothing leaves before its state is kept
	}
	release()
	if code := <-unsubscribed; code != 200 {
		t.Fatalf("unsubscribe: %d", code)
	}

	n := q.NotifyIn(leaving.CallID)
	if n.CSeq().SeqNo != 2 || !strings.Contains(string(n.Body()), "v2") || strings.HasPrefix(siptest.Header(n, "Subscription-State"), "terminated") {
		t.Fatalf("first NOTIFY after the PUBLISH:\n%s", n)
	}
	for cseq := uint32(3); ; cseq++ {
		n = q.NotifyIn(leaving.CallID)
		if n.CSeq().SeqNo != cseq || !strings.Contains(string(n.Body()), "v3") {
			t.Fatalf("NOTIFY %d:\n%s", cseq, n)
		}
		if strings.HasPrefix(siptest.Header(n, "Subscription-State"), "terminated") {
			break
		}
	}
	q.Quiet(50 * time.Millisecond)
	for _, sub := range subs {
		for i, v := range []string{"v2", "v3"} {
			if n := sub.Peer.NotifyIn(sub.CallID); n.CSeq().SeqNo != uint32(2+i) || !strings.Contains(string(n.Body()), v) {
				t.Fatalf("NOTIFY %d after the PUBLISHes:\n%s", i+1, n)
			}
		}
	}
	for _, w := range peers {
		w.Quiet(20 * time.Millisecond)
	}
}
