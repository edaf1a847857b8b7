package server_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/extensions/conference/confinfo"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest"
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

// loadCoalescing loads a module with a coalescing window on one package.
func loadCoalescing(t *testing.T, pkg, event string, window time.Duration, cfg map[string]string) *extension.Module {
	t.Helper()
	m, err := extension.Load(context.Background(), extension.Spec{Name: event, Path: sdktest.Build(t, pkg),
		MemoryLimitMB: 64, CallTimeout: 2 * time.Second, Instances: 2, Config: cfg,
		Coalesce: map[string]time.Duration{event: window}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// A burst of conference changes within the coalescing window reaches a
// watcher with consecutive versions (RFC 4575 §4.1: +1 per NOTIFY), full
// and partial documents alike, and what it rebuilds is what a new
// subscriber gets. Replacing a rendered NOTIFY skipped the versions the
// module had counted for the ones replaced.
func TestCoalescedConferenceVersionsAreConsecutive(t *testing.T) {
	for _, partial := range []string{"true", "false"} {
		t.Run("use_partial_states="+partial, func(t *testing.T) { coalescedConference(t, partial) })
	}
}

func coalescedConference(t *testing.T, partial string) {
	f := start(t, nil, loadCoalescing(t, confPkg, "conference", 300*time.Millisecond, map[string]string{"use_partial_states": partial}))
	const conf = "sip:conf233@example.com"
	pub, other := f.peer(t, "TCP"), f.peer(t, "TCP")
	w := &confWatcher{p: f.peer(t, "TCP")}
	var r *sip.Response
	w.sub, r = subscribe(t, w.p, "conference", conf, "Expires: 600")
	wantCode(t, r, 200)
	w.take(t)

	etag := ""
	for _, name := range []string{"seq-1-full.xml", "seq-2-partial.xml", "seq-3-partial.xml"} {
		var extra []string
		if etag != "" {
			extra = append(extra, "SIP-If-Match: "+etag)
		}
		r = publish(t, pub, "conference", conf, confinfo.MediaType, confdata(t, name), extra...)
		wantCode(t, r, 200)
		etag = hdr(r, "SIP-ETag")
	}
	// take checks each version is the last plus one
	for got := 0; ; got++ {
		select {
		case n := <-w.p.notifies:
			w.p.held = append(w.p.held, n)
			w.take(t)
			continue
		case <-time.After(time.Second):
		}
		if got == 0 || got == 3 {
			t.Fatalf("%d NOTIFYs after a burst of 3 changes within the window", got)
		}
		break
	}
	if want := fetch(t, other, conf); string(confinfo.Canonical(w.doc)) != want {
		t.Fatalf("the watcher rebuilt\n%s\na new subscriber gets\n%s", confinfo.Canonical(w.doc), want)
	}
}

var winfoVersion = regexp.MustCompile(`<watcherinfo [^>]*version="(\d+)"`)

// pa's watcher info counts versions per winfo subscriber (RFC 3858 §4.2);
// watchers arriving in a burst within the window are one NOTIFY, the next
// version.
func TestCoalescedWatcherInfoVersionsAreConsecutive(t *testing.T) {
	f := start(t, nil, loadCoalescing(t, paPkg, "presence.winfo", 300*time.Millisecond, nil))
	gina := "sip:gina@example.com"
	owner := f.peer(t, "UDP")
	r := owner.send(msg{method: "SUBSCRIBE", uri: gina, headers: []string{
		"From: <" + gina + ">;tag=own1", "To: <" + gina + ">", "Call-ID: " + newCallID(), "CSeq: 1 SUBSCRIBE",
		owner.contact(), "Event: presence.winfo", "Accept: application/watcherinfo+xml", "Expires: 600"}})
	wantCode(t, r, 200)
	version := func(n *sip.Request) int {
		t.Helper()
		m := winfoVersion.FindSubmatch(n.Body())
		if m == nil {
			t.Fatalf("winfo NOTIFY without a version:\n%s", n)
		}
		v, _ := strconv.Atoi(string(m[1]))
		return v
	}
	last := version(owner.notify())
	for i := 0; i < 4; i++ {
		w := f.peer(t, "UDP")
		_, r := subscribe(t, w, "presence", gina, "Expires: 600")
		wantCode(t, r, 200)
	}
	got := 0
	for {
		select {
		case n := <-owner.notifies:
			if v := version(n); v != last+1 {
				t.Fatalf("winfo version %d after %d:\n%s", v, last, n.Body())
			}
			last++
			got++
			continue
		case <-time.After(time.Second):
		}
		break
	}
	if got == 0 || got == 4 {
		t.Fatalf("%d winfo NOTIFYs for 4 watchers arriving within the window", got)
	}
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
	r := publish(t, p, "echo", alice, "text/plain", "v1")
	wantCode(t, r, 200)
	etag := hdr(r, "SIP-ETag")
	subA, r := subscribe(t, w, "echo", alice, "Expires: 600")
	wantCode(t, r, 200)
	subB, r := subscribe(t, w, "echo", alice, "Expires: 600")
	wantCode(t, r, 200)
	subC, r := subscribe(t, w, "echo", alice, "Expires: 2")
	wantCode(t, r, 200)
	last := map[string]uint32{}
	for _, sub := range []*subscription{subA, subB, subC} {
		last[sub.callID] = w.notifyIn(sub.callID).CSeq().SeqNo
	}

	st.failing.Store(true)
	r = publish(t, p, "echo", alice, "text/plain", "v2", "SIP-If-Match: "+etag)
	if r.StatusCode != 500 || !strings.Contains(hdr(r, "Warning"), "state could not be stored") {
		t.Fatalf("PUBLISH with the store failing: %d %s", r.StatusCode, hdr(r, "Warning"))
	}
	if r := subA.again("Expires: 0"); r.StatusCode != 500 {
		t.Fatalf("unsubscribe with the store failing: %d", r.StatusCode)
	}
	var id string
	for _, s := range f.srv.Subscriptions(server.Filter{}) {
		if tagOfID(s.ID) == subB.toTag {
			id = s.ID
		}
	}
	if err := f.srv.Terminate(id, "deactivated"); err == nil {
		t.Fatal("an operator's removal succeeded with the store failing")
	}
	w.quiet(3 * time.Second) // subC's expiry passes too
	if n := len(f.srv.Subscriptions(server.Filter{})); n != 3 {
		t.Fatalf("%d live subscriptions after refused removals, want 3", n)
	}
	f.srv.Close()

	st.failing.Store(false)
	start(t, st, mod)
	for i := 0; i < 3; i++ {
		n := w.notify()
		call := hdr(n, "Call-ID")
		before, ok := last[call]
		if !ok {
			t.Fatalf("NOTIFY in an unknown dialog:\n%s", n)
		}
		if n.CSeq().SeqNo <= before {
			t.Fatalf("CSeq %d after %d in dialog %s: used twice", n.CSeq().SeqNo, before, call)
		}
		if string(n.Body()) != "v1" && !strings.HasPrefix(hdr(n, "Subscription-State"), "terminated") {
			t.Fatalf("after the restart:\n%s", n)
		}
		delete(last, call)
	}
}

// A NOTIFY never leaves with a CSeq the store has not recorded: when the
// reservation of the next block of CSeqs fails, the NOTIFY waits, and
// leaves once the store takes it.
func TestNotifyWaitsForItsCSeqReservation(t *testing.T) {
	st := &failingStore{Store: store.NewMemory(), only: func(b *store.Batch) bool { return len(b.NotifyCSeqs) > 0 }}
	f := start(t, st, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	r := publish(t, p, "echo", alice, "text/plain", "v0")
	wantCode(t, r, 200)
	etag := hdr(r, "SIP-ETag")
	_, r = subscribe(t, w, "echo", alice, "Expires: 600")
	wantCode(t, r, 200)
	w.notify()
	// CSeqs 1 to 32 came with the subscription; 33 needs a reservation
	for i := 2; i <= cseqBlock; i++ {
		r := publish(t, p, "echo", alice, "text/plain", fmt.Sprintf("v%d", i), "SIP-If-Match: "+etag)
		wantCode(t, r, 200)
		etag = hdr(r, "SIP-ETag")
		if n := w.notify(); n.CSeq().SeqNo != uint32(i) {
			t.Fatalf("NOTIFY CSeq %d, want %d", n.CSeq().SeqNo, i)
		}
	}
	st.failing.Store(true)
	wantCode(t, publish(t, p, "echo", alice, "text/plain", "v33", "SIP-If-Match: "+etag), 200)
	w.quiet(1500 * time.Millisecond)
	if st.refused.Load() == 0 {
		t.Fatal("no reservation was tried")
	}
	st.failing.Store(false)
	n := w.notify()
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
	wantCode(t, publish(t, p, "echo", alice, "text/plain", "v1"), 200)
	subA, r := subscribe(t, w, "echo", alice, "Expires: 600")
	wantCode(t, r, 200)
	subB, r := subscribe(t, w, "echo", alice, "Expires: 600")
	wantCode(t, r, 200)
	w.notifyIn(subA.callID)
	w.notifyIn(subB.callID)
	wantCode(t, subA.again("Expires: 0"), 200)
	for _, s := range f.srv.Subscriptions(server.Filter{}) {
		if tagOfID(s.ID) == subB.toTag {
			if err := f.srv.Terminate(s.ID, "deactivated"); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.notifyIn(subA.callID) // the final NOTIFYs
	w.notifyIn(subB.callID)
	f.srv.Close()
	second := start(t, st, mod)
	if subs := second.srv.Subscriptions(server.Filter{}); len(subs) != 0 {
		t.Fatalf("ended subscriptions came back: %+v", subs)
	}
	w.quiet(500 * time.Millisecond)
}

// tagOfID is the local tag a subscription id starts with.
func tagOfID(id string) string {
	t, _, _ := strings.Cut(id, ".")
	return t
}
