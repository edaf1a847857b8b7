package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/presenced/presenced/internal/store/postgres/pgtest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// startNodeDaemons starts n daemons with the presence module on one
// pgtest database, each with its own data_dir and port: the nodes of a
// cluster (docs/cluster.md). It returns their SIP addresses.
func startNodeDaemons(t *testing.T, n int) []string {
	bin := buildDaemon(t)
	dsn := pgtest.DSN(t)
	var addrs []string
	for range n {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		d := startDaemon(t, bin, "-config", paConfig(t, addr, fmt.Sprintf("backend = \"postgres\"\ndsn = %q", dsn)))
		d.serving(t)
		t.Cleanup(func() { d.stop(t) })
		addrs = append(addrs, addr)
	}
	return addrs
}

// Two daemons on one database: a PUBLISH to one reaches a watcher held
// by the other, in the daemon as built (its store behind the metrics'
// timing, through which the feed is found).
func TestDaemonsShareChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	addrs := startNodeDaemons(t, 2)
	const carol = "sip:carol@example.com"
	w := siptest.NewPeer(t, "UDP", addrs[1])
	_, res := w.Subscribe("presence", carol, "Expires: 600")
	siptest.WantCode(t, res, 200)
	w.Notify()
	res = siptest.NewPeer(t, "UDP", addrs[0]).Publish("presence", carol, "application/pidf+xml",
		pidf(carol, "t1", "open", "published on the other daemon"))
	siptest.WantCode(t, res, 200)
	if body := string(w.Notify().Body()); !strings.Contains(body, "published on the other daemon") {
		t.Fatalf("NOTIFY from the watcher's daemon:\n%s", body)
	}
}
