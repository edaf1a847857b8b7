package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/logtest"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store/postgres"
	"github.com/presenced/presenced/internal/store/postgres/pgtest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// A node on a PostgreSQL server that restarts, then stalls. While the
// server is down every PUBLISH and SUBSCRIBE is answered 503 with
// Retry-After, logged and counted, and nothing of them is stored; once
// it is back the node serves again at once, and what was acknowledged
// before the restart is still there, for a node started after it too. While it stalls a request waits and
// then lands, or is refused 503 and not stored: never a 200 for a write
// the database does not hold.
func TestDatabaseRestartAndPause(t *testing.T) {
	db := pgtest.Own(t)
	st, err := postgres.Open(context.Background(), db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the server's Close
	var srv *server.Server
	m := metrics.New(func() []*extension.Module { return srv.Modules() })
	var log logtest.Buffer
	f := startFixture(t, server.Options{Store: m.Store(st), Metrics: m,
		Logger: slog.New(slog.NewTextHandler(&log, nil)), Modules: []*extension.Module{extensiontest.Load(t, paPkg, nil)}})
	srv = f.srv
	web := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	t.Cleanup(web.Close)

	const carol = "sip:carol@example.com"
	p := f.peer(t, "UDP")
	w := f.peer(t, "UDP")
	_, res := w.Subscribe("presence", carol, "Expires: 600")
	siptest.WantCode(t, res, 200)
	w.Notify()
	publish := func(id string) *sip.Response {
		t.Helper()
		return p.Publish("presence", carol, "application/pidf+xml", pidf(carol, id, "open", id), "Expires: 600")
	}
	refused := map[string]int{} // by method
	want503 := func(res *sip.Response) {
		t.Helper()
		siptest.WantCode(t, res, 503)
		if res.GetHeader("Retry-After") == nil {
			t.Fatalf("503 without Retry-After:\n%s", res)
		}
		refused[res.CSeq().MethodName.String()]++
	}
	siptest.WantCode(t, publish("before-restart"), 200)
	notifiedOf(t, w, "watcher before the restart", "before-restart")

	// Down longer than a dialog lease, as a restart with recovery may be:
	// the node cannot renew its lease meanwhile.
	db.Stop()
	down := time.Now()
	for i := 0; time.Since(down) < server.DefaultLease+time.Second; i++ {
		want503(publish(fmt.Sprintf("while-down-%d", i)))
		time.Sleep(time.Second)
	}
	_, res = f.peer(t, "UDP").Subscribe("presence", carol, "Expires: 600")
	want503(res)

	db.Start()
	// The pool's sessions died with the server, and are found dead
	// (pinged, being idle over a second) before use: the first write
	// after the server is back must not be refused for them.
	siptest.WantCode(t, publish("after-restart"), 200)
	notifiedOf(t, w, "watcher after the restart", "before-restart", "after-restart")
	// What the database holds, not only what this node remembers: a node
	// started now reads it.
	st2, err := postgres.Open(context.Background(), db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	w2 := start(t, st2, extensiontest.Load(t, paPkg, nil)).peer(t, "UDP")
	_, res = w2.Subscribe("presence", carol, "Expires: 600")
	siptest.WantCode(t, res, 200)
	if body := string(w2.Notify().Body()); !strings.Contains(body, "before-restart") || strings.Contains(body, "while-down") {
		t.Fatalf("first NOTIFY of a node started after the restart:\n%s", body)
	}

	// A stall shorter than a PUBLISH's wait for its answer (siptest's 5 s)
	// and than the dialog leases.
	const pause = 2500 * time.Millisecond
	db.Pause()
	begin := time.Now()
	resumed := make(chan struct{})
	time.AfterFunc(pause, func() { db.Resume(); close(resumed) })
	res = publish("during-pause")
	took := time.Since(begin)
	<-resumed
	stored := res.StatusCode == 200
	if stored {
		// Its commit cannot have been made while the server was frozen.
		if took < pause {
			t.Fatalf("PUBLISH answered 200 after %v, within the database's %v pause", took, pause)
		}
		t.Logf("PUBLISH during the pause answered 200 after %v", took.Round(time.Millisecond))
	} else {
		want503(res)
	}
	siptest.WantCode(t, publish("after-pause"), 200)
	w3 := f.peer(t, "UDP")
	_, res = w3.Subscribe("presence", carol, "Expires: 600")
	siptest.WantCode(t, res, 200)
	body := string(w3.Notify().Body())
	if !strings.Contains(body, "before-restart") || !strings.Contains(body, "after-pause") ||
		strings.Contains(body, "during-pause") != stored {
		t.Fatalf("after the pause (PUBLISH during it answered %d):\n%s", res.StatusCode, body)
	}
	notifiedOf(t, w, "watcher after the pause", "after-pause")

	got := scrape(t, web.URL)
	for _, method := range []string{"PUBLISH", "SUBSCRIBE"} {
		wantMetric(t, got, `presenced_sip_responses_total{code="503",method="`+method+`"}`, float64(refused[method]))
	}
	// Down over a lease, the node found its lease lost and joined again.
	for _, want := range []string{"state store out of reach", "lease lost"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("no %q logged:\n%s", want, log.String())
		}
	}
}
