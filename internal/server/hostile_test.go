package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The hostile test modules of internal/extension (testdata/*/main.go there
// say what each body does): "hostile" serves the event package "hostile"
// through the SDK, "rawabi" the package "raw" with the ABI by hand.
const (
	hostileModPkg = "github.com/presenced/presenced/internal/extension/testdata/hostile"
	rawabiModPkg  = "github.com/presenced/presenced/internal/extension/testdata/rawabi"
)

// loadHostile loads pkg with a short call deadline, a small memory cap and
// one instance. The deadline also bounds the call after a failure, which
// makes a fresh instance first: 10-50 ms on an idle machine, but more than
// 300 ms was seen on two loaded cores.
func loadHostile(t *testing.T, pkg string) *extension.Module {
	t.Helper()
	m, err := extension.Load(context.Background(), extension.Spec{
		Name: filepath.Base(pkg), Path: sdktest.Build(t, pkg), MemoryLimitMB: 32,
		CallTimeout: time.Second, Instances: 1,
		CacheDir: filepath.Join(os.TempDir(), "presenced-wasm-cache"),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// A module that misbehaves costs the request that hit it a prompt 500
// naming the extension, and nothing else: the echo package, served by
// another module alongside, answers and notifies while the hostile call
// runs and after it; the hostile package serves its next sound request;
// and the metrics count each failure against the right extension.
func TestHostileModuleAnswers500(t *testing.T) {
	hostile, raw := loadHostile(t, hostileModPkg), loadHostile(t, rawabiModPkg)
	var srv *server.Server
	m := metrics.New(func() []*extension.Module { return srv.Modules() })
	srv, err := server.New(server.Options{
		Listen:       []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Subscription: server.Bounds{Min: 1, Max: 3600}, Publication: server.Bounds{Min: 1, Max: 3600},
		Modules: []*extension.Module{echo(t), hostile, raw}, Store: m.Store(store.NewMemory()), Metrics: m,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	web := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	defer web.Close()
	_, addr, _ := strings.Cut(srv.Addrs()[0], ":")

	attacker, bystander, watcher := siptest.NewPeer(t, "UDP", addr), siptest.NewPeer(t, "UDP", addr), siptest.NewPeer(t, "UDP", addr)
	_, r := watcher.Subscribe("echo", alice)
	siptest.WantCode(t, r, 200)
	watcher.Notify()
	before := scrape(t, web.URL)

	cases := []struct {
		mod   *extension.Module
		event string
		body  string
		long  bool // the call runs until its deadline
	}{
		{hostile, "hostile", "loop", true},
		{hostile, "hostile", "sleep", true},
		{hostile, "hostile", "panic", false},
		{hostile, "hostile", "alloc", false}, // the memory cap or the deadline, whichever first
		{raw, "raw", "garbage", false},
		{raw, "raw", "badin", false},
		{raw, "raw", "badout", false},
		{raw, "raw", "badlog", false},
		{raw, "raw", "huge", false},
		{raw, "raw", "neg", false},
	}
	for i, c := range cases {
		t.Run(c.event+"/"+c.body, func(t *testing.T) {
			resource := fmt.Sprintf("sip:victim%d@example.com", i)
			sent := time.Now()
			attacker.SendRaw(attacker.Render(siptest.PublishRequest(c.event, resource, "text/plain", c.body)))

			// meanwhile: another package answers and notifies
			siptest.WantCode(t, bystander.Publish("echo", alice, "text/plain", "during "+c.body), 200)
			if c.long && attacker.ResponsesWaiting() > 0 {
				t.Errorf("the hostile call was over before the echo PUBLISH was answered: no overlap shown")
			}
			if n := watcher.Notify(); string(n.Body()) != "during "+c.body {
				t.Fatalf("NOTIFY during %s:\n%s", c.body, n)
			}

			r := attacker.Response()
			took := time.Since(sent)
			siptest.WantCode(t, r, 500)
			want := fmt.Sprintf(`"extension %s failed"`, c.mod.Name())
			if w := siptest.Header(r, "Warning"); !strings.HasPrefix(w, "399 ") || !strings.Contains(w, want) {
				t.Fatalf("Warning: %q, want 399 with %s", w, want)
			}
			// 1 s deadline; the module sleeps 10 s or loops forever
			if took > 5*time.Second {
				t.Fatalf("answered after %v", took)
			}

			// the hostile package serves its next sound request, on the
			// same resource
			siptest.WantCode(t, attacker.Publish(c.event, resource, "text/plain", "fine"), 200)
		})
	}

	// and after it all, the echo package still works
	siptest.WantCode(t, bystander.Publish("echo", alice, "text/plain", "after"), 200)
	if n := watcher.Notify(); string(n.Body()) != "after" {
		t.Fatalf("NOTIFY after:\n%s", n)
	}

	after := scrape(t, web.URL)
	delta := func(name string) float64 { return after[name] - before[name] }
	failed := map[string]float64{}
	for _, c := range cases {
		failed[c.mod.Name()]++
	}
	for name, want := range map[string]float64{
		`presenced_extension_errors_total{extension="hostile"}`:      failed["hostile"],
		`presenced_extension_errors_total{extension="rawabi"}`:       failed["rawabi"],
		`presenced_extension_errors_total{extension="echo"}`:         0,
		`presenced_sip_responses_total{code="500",method="PUBLISH"}`: float64(len(cases)),
	} {
		if got := delta(name); got != want {
			t.Errorf("%s moved by %v, want %v", name, got, want)
		}
	}
}

// BenchmarkPublishBesideALoop is the latency of a PUBLISH to a presentity
// that has nothing to do with a module that loops: four clients keep a
// call of the hostile module looping (each on a presentity of its own,
// each cut at the 200 ms call_timeout and sent again) while the benchmark
// publishes elsewhere, to the echo package of another module
// ("other-module") or to the same looping module ("same-module", as in
// issue 16). The hostile module runs with the config's defaults and
// untrusted, as a third party's module would. Reported: the median, the
// 90th percentile and the slowest of the PUBLISH's round trips, and the
// share answered other than 200. Run it for seconds (-benchtime 3s), not
// a count: the loops come and go in 200 ms cycles.
func BenchmarkPublishBesideALoop(b *testing.B) {
	for _, same := range []bool{false, true} {
		b.Run(map[bool]string{false: "other-module", true: "same-module"}[same], func(b *testing.B) {
			hostile, err := extension.Load(context.Background(), extension.Spec{
				Name: "hostile", Path: sdktest.Build(b, hostileModPkg), MemoryLimitMB: 64,
				CallTimeout: 200 * time.Millisecond, Instances: 2, MaxInstances: 8,
				CacheDir: filepath.Join(os.TempDir(), "presenced-wasm-cache"),
				Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { hostile.Close(context.Background()) })
			f := start(b, nil, echo(b), hostile)
			event := "echo"
			if same {
				event = "hostile"
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i := range 4 {
				p := f.peer(b, "UDP")
				wg.Go(func() {
					uri := fmt.Sprintf("sip:loop%d@example.com", i)
					for {
						select {
						case <-stop:
							return
						default:
						}
						p.SendRaw(p.Render(siptest.PublishRequest("hostile", uri, "text/plain", "loop")))
						p.Response()
					}
				})
			}
			defer wg.Wait()
			defer close(stop)
			time.Sleep(100 * time.Millisecond) // the loops are running
			p := f.peer(b, "UDP")
			var took []time.Duration
			refused := 0
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				sent := time.Now()
				r := p.Publish(event, fmt.Sprintf("sip:bystander%d@example.com", i), "text/plain", "open")
				took = append(took, time.Since(sent))
				if r.StatusCode != 200 {
					refused++
				}
			}
			slices.Sort(took)
			ms := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))].Microseconds()) / 1000 }
			b.ReportMetric(ms(0.5), "p50-ms")
			b.ReportMetric(ms(0.9), "p90-ms")
			b.ReportMetric(ms(1), "max-ms")
			// an answer other than 200 (503: no instance came free in
			// time) is a failure the latency alone would hide
			b.ReportMetric(float64(refused)/float64(len(took)), "refused/op")
		})
	}
}

// A module backed off after failures in a row is answered 503 with the
// back-off's Retry-After, without a call, and /metrics shows it.
func TestBackedOffModuleAnswers503(t *testing.T) {
	hostile, err := extension.Load(context.Background(), extension.Spec{
		Name: "hostile", Path: sdktest.Build(t, hostileModPkg), MemoryLimitMB: 32,
		CallTimeout: time.Second, Instances: 1,
		Backoff:  extension.Backoff{After: 2, Window: time.Minute, First: 3 * time.Second, Max: time.Minute},
		CacheDir: filepath.Join(os.TempDir(), "presenced-wasm-cache"),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostile.Close(context.Background()) })
	var srv *server.Server
	m := metrics.New(func() []*extension.Module { return srv.Modules() })
	srv, err = server.New(server.Options{
		Listen:       []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Subscription: server.Bounds{Min: 1, Max: 3600}, Publication: server.Bounds{Min: 1, Max: 3600},
		Modules: []*extension.Module{hostile}, Store: store.NewMemory(), Metrics: m,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	web := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	defer web.Close()
	_, addr, _ := strings.Cut(srv.Addrs()[0], ":")
	p := siptest.NewPeer(t, "UDP", addr)

	siptest.WantCode(t, p.Publish("hostile", alice, "text/plain", "panic"), 500)
	siptest.WantCode(t, p.Publish("hostile", alice, "text/plain", "panic"), 500)
	r := p.Publish("hostile", alice, "text/plain", "fine")
	siptest.WantCode(t, r, 503)
	if ra := siptest.Header(r, "Retry-After"); ra != "3" {
		t.Errorf("Retry-After: %q, want 3", ra)
	}
	if w := siptest.Header(r, "Warning"); !strings.Contains(w, "extension hostile backing off") {
		t.Errorf("Warning: %q", w)
	}
	got := scrape(t, web.URL)
	for name, want := range map[string]float64{
		`presenced_extension_backoff{extension="hostile"}`:       1,
		`presenced_extension_refused_total{extension="hostile"}`: 1,
		`presenced_extension_calls_total{extension="hostile"}`:   2,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
