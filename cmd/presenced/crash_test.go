package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/store/postgres/pgtest"
	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// cseqBlock is the server's (internal/server): a dialog reserves its CSeqs
// in blocks of 32, the first with the subscription.
const cseqBlock = 32

// freePort is a UDP port free now, for the daemon's SIP listener: its
// peers know the address before it starts, and a daemon restarted after
// SIGKILL must come back on it.
func freePort(t *testing.T) int {
	return portBelowEphemeral(t, func(addr string) bool {
		pc, err := net.ListenPacket("udp", addr)
		if err == nil {
			pc.Close()
		}
		return err == nil
	})
}

// A 2xx means the change is on disk: the daemon is killed with SIGKILL
// right after the answers arrive, restarted on the same data directory
// or database, and every acknowledged publication and subscription is
// back; a new PUBLISH notifies the old watchers in their old dialogs,
// CSeq rising. Once with each durable store.
func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	t.Run("sqlite", func(t *testing.T) { sigkillLosesNothing(t, `backend = "sqlite"`) })
	t.Run("postgres", func(t *testing.T) {
		sigkillLosesNothing(t, fmt.Sprintf("backend = \"postgres\"\ndsn = %q", pgtest.DSN(t)))
	})
}

// sigkillLosesNothing is TestSIGKILLLosesNothingAcknowledged on the store
// of storeTable, the [store] table's keys.
func sigkillLosesNothing(t *testing.T, storeTable string) {
	bin := buildDaemon(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, bin, "-config", paConfig(t, addr, storeTable))
	d.serving(t)

	const n = 5 // presentities, each with one publication and two watchers
	pub := siptest.NewPeer(t, "UDP", addr)
	var watchers []*siptest.Peer
	var subs []*siptest.Subscription
	etags := make([]string, n)
	for i := 0; i < n; i++ {
		uri := fmt.Sprintf("sip:crash%d@example.com", i)
		r := pub.Publish("presence", uri, "application/pidf+xml", pidf(uri, "t1", "open", "before the crash"))
		siptest.WantCode(t, r, 200)
		etags[i] = siptest.Header(r, "SIP-ETag")
		for j := 0; j < 2; j++ {
			w := siptest.NewPeer(t, "UDP", addr)
			sub, r := w.Subscribe("presence", uri, "Expires: 600")
			siptest.WantCode(t, r, 200)
			watchers = append(watchers, w)
			subs = append(subs, sub)
		}
	}
	d.kill(t) // right after the last 2xx

	// The restarted daemon tells every watcher the state again: each sees
	// one or two NOTIFYs of it (the first one is lost if the kill came
	// after its commit and before it left), then the change made after the
	// restart, in the same dialog. CSeq rises: by one within a run, and
	// across the restart above the block the first run reserved.
	d.restart(t).serving(t)
	last := make([]uint32, len(watchers))
	for i := 0; i < n; i++ {
		uri := fmt.Sprintf("sip:crash%d@example.com", i)
		r := pub.Publish("presence", uri, "application/pidf+xml", pidf(uri, "t1", "closed", "after the crash"),
			"SIP-If-Match: "+etags[i])
		siptest.WantCode(t, r, 200) // the ETag survived
		for j := 0; j < 2; j++ {
			k := 2*i + j
			w, sub := watchers[k], subs[k]
			for before := 0; ; before++ {
				nt := w.Notify()
				seq := nt.CSeq().SeqNo
				if siptest.Header(nt, "Call-ID") != sub.CallID || siptest.Tag(siptest.Header(nt, "From")) != sub.ToTag || seq <= last[k] ||
					(last[k] > cseqBlock && seq != last[k]+1) {
					t.Fatalf("watcher %d,%d after restart (CSeq before %d):\n%s", i, j, last[k], nt)
				}
				last[k] = seq
				if strings.Contains(string(nt.Body()), "after the crash") {
					if before == 0 {
						t.Fatalf("watcher %d,%d: no NOTIFY of the state before the crash", i, j)
					}
					break
				}
				if !strings.Contains(string(nt.Body()), "before the crash") || before == 2 {
					t.Fatalf("watcher %d,%d: NOTIFY %d:\n%s", i, j, before+1, nt)
				}
			}
		}
	}
	// the dialogs accept refreshes
	if r := subs[0].Again("Expires: 600"); r.StatusCode != 200 {
		t.Fatalf("refresh after restart: %d %s", r.StatusCode, siptest.Header(r, "Warning"))
	}
	if nt := watchers[0].Notify(); nt.CSeq().SeqNo != last[0]+1 {
		t.Fatalf("NOTIFY after refresh CSeq %d", nt.CSeq().SeqNo)
	}
}

// An unsubscribe's 200 means the subscription is gone for good: watchers
// unsubscribe all at once, the daemon is killed with SIGKILL as soon as
// the first 200 arrives, and after the restart no acknowledged
// unsubscription is back (none is resynced, none is listed).
func TestSIGKILLAfterUnsubscribeKeepsItEnded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	bin := buildDaemon(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, bin, "-config", paConfig(t, addr, ""))
	d.serving(t)

	const n = 40
	uri := "sip:ended@example.com"
	w := siptest.NewPeer(t, "UDP", addr)
	subs := make([]*siptest.Subscription, n)
	for i := range subs {
		var r *sip.Response
		subs[i], r = w.Subscribe("presence", uri, "Expires: 600")
		siptest.WantCode(t, r, 200)
		w.NotifyIn(subs[i].CallID)
	}
	// every unsubscribe at once; kill at the first 200
	for _, s := range subs {
		s.CSeq++
		w.SendRaw(w.Render(siptest.Request{Method: "SUBSCRIBE", URI: "sip:presenced@" + addr, Headers: []string{
			"From: <sip:watcher@example.com>;tag=" + s.FromTag, "To: <" + uri + ">;tag=" + s.ToTag,
			"Call-ID: " + s.CallID, fmt.Sprintf("CSeq: %d SUBSCRIBE", s.CSeq), w.Contact(),
			"Event: presence", "Expires: 0"}}))
	}
	first := w.Response()
	d.kill(t)
	acked := map[string]bool{}
	if first.StatusCode == 200 {
		acked[siptest.Header(first, "Call-ID")] = true
	}
	for w.ResponsesWaiting() > 0 {
		if r := w.Response(); r.StatusCode == 200 {
			acked[siptest.Header(r, "Call-ID")] = true
		}
	}
	if len(acked) == 0 {
		t.Fatal("no unsubscribe was acknowledged")
	}

	d.restart(t).serving(t)
	// the restart resyncs every subscription it kept; an acknowledged
	// unsubscription must not be one of them
	for nt := w.NotifyWithin(3 * time.Second); nt != nil; nt = w.NotifyWithin(time.Second) {
		if acked[siptest.Header(nt, "Call-ID")] && !strings.HasPrefix(siptest.Header(nt, "Subscription-State"), "terminated") {
			t.Fatalf("%d unsubscribes acknowledged; this one came back after the restart:\n%s", len(acked), nt)
		}
	}
	t.Logf("%d of %d unsubscribes acknowledged before the kill", len(acked), n)
}

// pidf is a PIDF document of one tuple, for the tests that run pa.
func pidf(entity, id, basic, note string) string {
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="%s">
  <tuple id="%s"><status><basic>%s</basic></status><contact>sip:%s@pc.example.com</contact></tuple>
  <note>%s</note>
</presence>`, entity, id, basic, id, note)
}

// paConfig writes a daemon's config in a new directory (its data_dir
// there): one UDP listener on addr, no admin API, the presence module,
// and storeTable as the [store] table's keys. It returns its path.
func paConfig(t *testing.T, addr, storeTable string) string {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "presenced.toml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
data_dir = %q
[[listen]]
transport = "udp"
address = %q
[store]
%s
[admin]
listen = ""
[extension.pa]
path = %q
`, filepath.Join(dir, "data"), addr, storeTable, sdktest.Build(t, paPkg))), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
