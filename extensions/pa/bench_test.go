package main

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/sdktest"
)

// benchPIDF is what bench/sipp/publish.xml sends: ~300 bytes, one tuple
// and a note.
func benchPIDF(uri string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="` + uri + `">
  <tuple id="t1"><status><basic>open</basic></status><contact>` + uri + `</contact><timestamp>2026-01-01T00:00:00Z</timestamp></tuple>
  <note>in a benchmark</note>
</presence>`)
}

// threadCPU is the CPU time of the calling thread, where the OS gives it
// (threadcpu_linux_test.go), else nil.
var threadCPU func() time.Duration

// loop runs call b.N times and, where threadCPU is known, reports the
// thread CPU time per call as "cpu-µs/op": the thread is locked, so it
// counts the host's encoding and copying and the guest's code (all run on
// the calling goroutine), not the collector's background workers nor the
// other processes of a shared machine, which swing the ns/op by a third
// between runs.
func loop(b *testing.B, call func()) {
	if threadCPU == nil {
		for b.Loop() {
			call()
		}
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var start time.Duration
	for i := 0; b.Loop(); i++ {
		if i == 0 { // b.Loop's first call reset the timer: warm-up is outside
			start = threadCPU()
		}
		call()
	}
	b.ReportMetric(float64(threadCPU()-start)/float64(b.N)/1e3, "cpu-µs/op")
}

// paRunners are the ways a pa call runs: as the daemon runs it (trusted
// wasm), with termination checks, and natively, the floor.
func paRunners(b *testing.B) map[string]func(*abi.Request) *abi.Response {
	run := func(h func(context.Context, *abi.Request) (*abi.Response, error)) func(*abi.Request) *abi.Response {
		return func(req *abi.Request) *abi.Response {
			res, err := h(context.Background(), req)
			if err != nil || res.Code != 0 {
				b.Fatalf("%v %+v", err, res)
			}
			return res
		}
	}
	native := &pa{}
	if _, err := native.Init("pa", sdk.Config{}); err != nil {
		b.Fatal(err)
	}
	return map[string]func(*abi.Request) *abi.Response{
		"trusted": run(sdktest.LoadTrusted(b, pkg, nil).Handle),
		"checked": run(sdktest.Load(b, pkg, nil).Handle),
		"native": run(func(_ context.Context, req *abi.Request) (*abi.Response, error) {
			return sdk.Dispatch(native, req)
		}),
	}
}

// BenchmarkPublishNew is the module's share of bench's "publish" workload:
// a first publication for a presentity nobody watches.
func BenchmarkPublishNew(b *testing.B) {
	for name, run := range paRunners(b) {
		b.Run(name, func(b *testing.B) {
			req := publish(nil, "p1", benchPIDF(resource))
			loop(b, func() { run(req) })
		})
	}
}

// BenchmarkPublishNewCold is BenchmarkPublishNew in trusted wasm with 16
// MB written between calls, a byte a cache line, as the daemon's other
// work between two calls (SIP, SQLite, the collector) does: what a call
// costs with the guest's code and data out of the CPU's caches. Only the
// calls are timed, and only they count in cpu-µs/op (internal/extension
// RATIONALE.md "A call costs the daemon more than it costs a benchmark").
func BenchmarkPublishNewCold(b *testing.B) {
	run := paRunners(b)["trusted"]
	req := publish(nil, "p1", benchPIDF(resource))
	evict := make([]byte, 16<<20)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var spent time.Duration
	for b.Loop() {
		b.StopTimer()
		for i := 0; i < len(evict); i += 64 {
			evict[i]++
		}
		b.StartTimer()
		if threadCPU == nil {
			run(req)
			continue
		}
		start := threadCPU()
		run(req)
		spent += threadCPU() - start
	}
	if threadCPU != nil {
		b.ReportMetric(float64(spent)/float64(b.N)/1e3, "cpu-µs/op")
	}
}

// BenchmarkRenderNew is the module's share of bench's "subscribe"
// workload: a new watcher of a presentity with one publication.
func BenchmarkRenderNew(b *testing.B) {
	for name, run := range paRunners(b) {
		b.Run(name, func(b *testing.B) {
			st := run(publish(nil, "p1", benchPIDF(resource))).State
			req := &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource, State: st,
				Watchers: []abi.Watcher{{ID: "w1", URI: "sip:bob@example.com", Accept: []string{pidfType}, Full: true}}}
			loop(b, func() {
				if res := run(req); len(res.Notifications) != 1 || len(res.Notifications[0].Body) == 0 {
					b.Fatal(fmt.Sprintf("%+v", res))
				}
			})
		})
	}
}

// BenchmarkRenderEmpty is the floor of a call: a watcher of a presentity
// with nothing published (the dummy document, no parsing).
func BenchmarkRenderEmpty(b *testing.B) {
	for name, run := range paRunners(b) {
		b.Run(name, func(b *testing.B) {
			req := &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource,
				Watchers: []abi.Watcher{{ID: "w1", URI: "sip:bob@example.com", Full: true}}}
			loop(b, func() { run(req) })
		})
	}
}

// crowd is the watchers' share of bench's "fanout" workload: the render
// the host makes apart for a presentity's 1,000 active watchers after a
// PUBLISH (internal/server, renderApart), each last sent an older
// document, so each is sent the new one.
func crowd(state []byte) *abi.Request {
	req := &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource, State: state,
		Watchers: make([]abi.Watcher, 1000)}
	sent := watcherState(pidfType, []byte("<presence/>"))
	accept := []string{pidfType} // one slice, as abi's decoding hands equal lists
	for i := range req.Watchers {
		req.Watchers[i] = abi.Watcher{ID: fmt.Sprintf("w%04d-7f3a9c1e", i), URI: fmt.Sprintf("sip:w%d@example.com", i),
			Accept: accept, Status: abi.StatusActive, State: sent}
	}
	return req
}

// BenchmarkRenderCrowd is that render, one call for 1,000 watchers.
func BenchmarkRenderCrowd(b *testing.B) {
	for name, run := range paRunners(b) {
		b.Run(name, func(b *testing.B) {
			req := crowd(run(publish(nil, "p1", benchPIDF(resource))).State)
			loop(b, func() {
				if res := run(req); len(res.Notifications) != len(req.Watchers) {
					b.Fatalf("%d notifications for %d watchers", len(res.Notifications), len(req.Watchers))
				}
			})
		})
	}
}
