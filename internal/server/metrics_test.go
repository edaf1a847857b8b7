package server_test

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrape fetches /metrics over HTTP and returns each sample by its
// exposition name with labels, e.g. `presenced_sip_requests_total{method="PUBLISH"}`.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// Traffic moves the counters by exactly what happened.
func TestMetricsCountTraffic(t *testing.T) {
	mod := echo(t)
	var srv *server.Server
	m := metrics.New(func() []*extension.Module { return srv.Modules() })
	srv, err := server.New(server.Options{
		Listen:       []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Subscription: server.Bounds{Min: 1, Max: 3600}, Publication: server.Bounds{Min: 1, Max: 3600},
		Modules: []*extension.Module{mod}, Store: m.Store(store.NewMemory()), Metrics: m,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	web := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	defer web.Close()
	_, addr, _ := strings.Cut(srv.Addrs()[0], ":")
	before := scrape(t, web.URL)

	p, w1, w2 := siptest.NewPeer(t, "UDP", addr), siptest.NewPeer(t, "UDP", addr), siptest.NewPeer(t, "UDP", addr)
	var etag string
	for i, uri := range []string{alice, "sip:b@example.com", "sip:c@example.com"} {
		r := p.Publish("echo", uri, "text/plain", "x")
		siptest.WantCode(t, r, 200)
		if i == 0 {
			etag = siptest.Header(r, "SIP-ETag")
		}
	}
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "bad"), 400)
	for _, w := range []*siptest.Peer{w1, w2} {
		_, r := w.Subscribe("echo", alice)
		siptest.WantCode(t, r, 200)
		w.Notify()
	}
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "y", "SIP-If-Match: "+etag), 200)
	w1.Notify()
	w2.Notify()
	_, r := w1.Subscribe("dialog", alice)
	siptest.WantCode(t, r, 489)
	time.Sleep(100 * time.Millisecond) // the last NOTIFY's 2xx is counted after it is read

	after := scrape(t, web.URL)
	delta := func(name string) float64 { return after[name] - before[name] }
	for name, want := range map[string]float64{
		`presenced_sip_requests_total{method="PUBLISH"}`:               5,
		`presenced_sip_requests_total{method="SUBSCRIBE"}`:             3,
		`presenced_sip_responses_total{code="200",method="PUBLISH"}`:   4,
		`presenced_sip_responses_total{code="400",method="PUBLISH"}`:   1,
		`presenced_sip_responses_total{code="489",method="SUBSCRIBE"}`: 1,
		`presenced_subscriptions{event="echo"}`:                        2,
		`presenced_publications{event="echo"}`:                         3,
		`presenced_notify_total{event="echo",result="ok"}`:             4,
		`presenced_notify_latency_seconds_count{event="echo"}`:         4,
		`presenced_extension_calls_total{extension="echo"}`:            7, // 5 PUBLISH bodies, 2 renders
		`presenced_extension_errors_total{extension="echo"}`:           0,
	} {
		if got := delta(name); got != want {
			t.Errorf("%s moved by %v, want %v", name, got, want)
		}
	}
	if after[`presenced_store_commit_seconds_count{result="ok"}`] < 6 {
		t.Errorf("store commits not timed: %v", after[`presenced_store_commit_seconds_count{result="ok"}`])
	}
}
