package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/presenced/presenced/internal/store/postgres/pgtest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// nodeLease is the test nodes' lease: short, so that a takeover comes
// soon, but 2 s, not 1: with a lease of 1 s renewed every third of it, a
// renewal late by a few hundred milliseconds on a loaded machine (the
// test packages and PostgreSQL sharing two cores) lost a live node's
// lease, and its dialogs went to another node in the middle of a test.
const nodeLease = 2 * time.Second

// startNodeDaemons starts n daemons with the presence module on one
// pgtest database, each with its own data_dir and port, their leases
// nodeLease, publications of a second or more taken: the nodes of a
// cluster (docs/cluster.md). It returns them and their SIP addresses.
func startNodeDaemons(t *testing.T, n int) ([]*daemon, []string) {
	bin := buildDaemon(t)
	dsn := pgtest.DSN(t)
	var ds []*daemon
	var addrs []string
	for range n {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		d := startDaemon(t, bin, "-config", paConfig(t, addr, fmt.Sprintf("backend = \"postgres\"\ndsn = %q\nlease = %q\n[publication]\nmin_expires = 1", dsn, nodeLease)))
		d.serving(t)
		ds, addrs = append(ds, d), append(addrs, addr)
	}
	return ds, addrs
}

// Two daemons on one database: a PUBLISH to one reaches a watcher held
// by the other, in the daemon as built (its store behind the metrics'
// timing, through which the feed is found). The publishing daemon
// SIGKILLed, its publication is removed by the other once its expiry is
// a lease past, and the watcher told: no busy lamp stays lit.
func TestDaemonsShareChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	ds, addrs := startNodeDaemons(t, 2)
	const carol = "sip:carol@example.com"
	w := siptest.NewPeer(t, "UDP", addrs[1])
	_, res := w.Subscribe("presence", carol, "Expires: 600")
	siptest.WantCode(t, res, 200)
	w.Notify()
	const secs = 2
	res = siptest.NewPeer(t, "UDP", addrs[0]).Publish("presence", carol, "application/pidf+xml",
		pidf(carol, "t1", "open", "published on the other daemon"), fmt.Sprintf("Expires: %d", secs))
	siptest.WantCode(t, res, 200)
	if body := string(w.Notify().Body()); !strings.Contains(body, "published on the other daemon") {
		t.Fatalf("NOTIFY from the watcher's daemon:\n%s", body)
	}

	ds[0].kill(t)
	killed := time.Now()
	bound := secs*time.Second + 2*nodeLease + 2*time.Second // the expiry, two leases, and slack
	n := w.NotifyWithin(bound)
	if n == nil {
		t.Fatalf("no NOTIFY within %v of the kill", bound)
	}
	if body := string(n.Body()); strings.Contains(body, "published on the other daemon") {
		t.Fatalf("NOTIFY %v after the kill still holds the killed daemon's publication:\n%s", time.Since(killed), body)
	}
}

// Three daemons on one database (leases of nodeLease), two watchers of
// carol on each, a publication from each. One is killed with SIGKILL:
// its watchers are taken on by another daemon, in the same dialogs, CSeq
// rising, that daemon's Contact in the NOTIFY, with every acknowledged
// publication in the state; a PUBLISH after the kill reaches all six.
// Restarted, the killed daemon sends nothing in the dialogs it lost: a
// PUBLISH to it reaches its former watchers from their new owner.
func TestSIGKILLedDaemonsDialogsAreTakenOver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	ds, addrs := startNodeDaemons(t, 3)
	const carol = "sip:carol@example.com"
	type watcher struct {
		p    *siptest.Peer
		sub  *siptest.Subscription
		node int
		cseq uint32
	}
	var ws []*watcher
	for i := range 6 {
		w := &watcher{p: siptest.NewPeer(t, "UDP", addrs[i%3]), node: i % 3}
		var res *sip.Response
		w.sub, res = w.p.Subscribe("presence", carol, "Expires: 600")
		siptest.WantCode(t, res, 200)
		w.cseq = w.p.Notify().CSeq().SeqNo
		ws = append(ws, w)
	}
	var ids []string
	for i, addr := range addrs {
		id := fmt.Sprintf("before-kill-%d", i)
		res := siptest.NewPeer(t, "UDP", addr).Publish("presence", carol, "application/pidf+xml", pidf(carol, id, "open", id), "Expires: 600")
		siptest.WantCode(t, res, 200)
		ids = append(ids, id)
	}
	// next waits for w's NOTIFY holding every id, each NOTIFY in its
	// dialog, CSeq rising, and none with a Contact at the address not.
	next := func(w *watcher, what, not string, ids ...string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			n := w.p.NotifyWithin(time.Until(deadline))
			if n == nil {
				t.Fatalf("watcher of node %d, %s: no NOTIFY with %v", w.node, what, ids)
			}
			if siptest.Header(n, "Call-ID") != w.sub.CallID || siptest.Tag(siptest.Header(n, "From")) != w.sub.ToTag ||
				n.CSeq().SeqNo <= w.cseq {
				t.Fatalf("watcher of node %d, %s: NOTIFY outside its dialog or CSeq %d after %d:\n%s",
					w.node, what, n.CSeq().SeqNo, w.cseq, n)
			}
			w.cseq = n.CSeq().SeqNo
			if contact := siptest.Header(n, "Contact"); contact == "" || (not != "" && strings.Contains(contact, not)) {
				t.Fatalf("watcher of node %d, %s: NOTIFY with Contact %q", w.node, what, contact)
			}
			all := true
			for _, id := range ids {
				all = all && strings.Contains(string(n.Body()), id)
			}
			if all {
				return
			}
		}
	}
	for _, w := range ws {
		next(w, "before the kill", "", ids...)
	}

	ds[0].kill(t)
	res := siptest.NewPeer(t, "UDP", addrs[1]).Publish("presence", carol, "application/pidf+xml",
		pidf(carol, "after-kill", "open", "after-kill"), "Expires: 600")
	siptest.WantCode(t, res, 200)
	ids = append(ids, "after-kill")
	for _, w := range ws {
		next(w, "after the kill", addrs[0], ids...)
	}

	restarted := ds[0].restart(t)
	restarted.serving(t)
	res = siptest.NewPeer(t, "UDP", addrs[0]).Publish("presence", carol, "application/pidf+xml",
		pidf(carol, "after-restart", "open", "after-restart"), "Expires: 600")
	siptest.WantCode(t, res, 200)
	ids = append(ids, "after-restart")
	for _, w := range ws {
		next(w, "after the restart", addrs[0], ids...)
	}
	for _, w := range ws {
		if w.node == 0 {
			w.p.Quiet(2 * nodeLease) // two leases: nothing more from anyone, the restarted node included
		}
	}
}
