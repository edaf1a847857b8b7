//go:build wasip1

package main

import (
	"runtime"
	"testing"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
)

// BenchmarkGuest is the module's call measured inside the Go guest, where
// allocations and the collector cost what the daemon pays; the trusted
// benchmarks add the host's side (encoding the request, copying it in
// and out). "dispatch" is sdk.Dispatch alone; "handle" adds what the
// SDK's presenced_handle glue does around it, decoding the request from
// its encoding into the one Request it keeps and encoding the response
// into a reused buffer. "MiB-sys" is the memory the guest's runtime has
// taken from its linear memory so far, which Go never gives back: the
// figure a GOGC setting grows. Run it in wasm (sdk/RATIONALE.md):
//
//	GOOS=wasip1 GOARCH=wasm go test -c -o /tmp/pa.wasm ./extensions/pa
//	go run ./sdk/sdktest/wasmrun /tmp/pa.wasm -test.run '^$' -test.bench Guest -test.benchmem
func BenchmarkGuest(b *testing.B) {
	p := &pa{}
	mux := sdk.NewMux(p.Init)
	mux.Handle(presenceEvent, p)
	mux.Handle(winfoEvent, winfo{})
	if _, err := mux.Init("pa", sdk.Config{}); err != nil {
		b.Fatal(err)
	}
	dispatch := func(b *testing.B, req *abi.Request) *abi.Response {
		res, err := sdk.Dispatch(mux, req)
		if err != nil || res.Code != 0 {
			b.Fatalf("%v %+v", err, res)
		}
		return res
	}
	published := dispatch(b, publish(nil, "p1", benchPIDF(resource))).State
	for _, c := range []struct {
		name string
		req  *abi.Request
	}{
		{"PublishNew", publish(nil, "p1", benchPIDF(resource))},
		{"RenderNew", &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource, State: published,
			Watchers: []abi.Watcher{{ID: "w1", URI: "sip:bob@example.com", Accept: []string{pidfType}, Full: true}}}},
		{"RenderEmpty", &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource,
			Watchers: []abi.Watcher{{ID: "w1", URI: "sip:bob@example.com", Full: true}}}},
		{"RenderCrowd", crowd(published)},
	} {
		b.Run(c.name+"/dispatch", func(b *testing.B) {
			for b.Loop() {
				dispatch(b, c.req)
			}
		})
		b.Run(c.name+"/decode", func(b *testing.B) {
			in := c.req.Marshal()
			var req abi.Request
			for b.Loop() {
				if err := req.Unmarshal(in); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/encode", func(b *testing.B) {
			res := dispatch(b, c.req)
			var out []byte
			for b.Loop() {
				out = res.MarshalAppend(out[:0])
			}
		})
		b.Run(c.name+"/handle", func(b *testing.B) {
			in := c.req.Marshal()
			var out []byte
			var req abi.Request // one for every call, as the glue keeps
			for b.Loop() {
				if err := req.Unmarshal(in); err != nil {
					b.Fatal(err)
				}
				out = dispatch(b, &req).MarshalAppend(out[:0])
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.Sys)/(1<<20), "MiB-sys")
		})
	}
}
