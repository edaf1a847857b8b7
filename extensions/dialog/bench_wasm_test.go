//go:build wasip1

package main

import (
	"testing"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
	"github.com/presenced/presenced/sdk/sdktest"
)

// BenchmarkGuest is the module's calls measured inside the Go guest, as
// pa's is (extensions/pa/bench_wasm_test.go says how to run it): a PUBLISH
// of a ringing line over one already published, and a render of those for
// a new watcher.
func BenchmarkGuest(b *testing.B) {
	m := &module{}
	m.Handler = pubstate.Handler{ContentType: infoType, Fold: m.fold, Notify: m.notify}
	if _, err := m.Init("dialog", sdk.Config{}); err != nil {
		b.Fatal(err)
	}
	body := sdktest.Testdata(b, "pbx-ringing.xml")
	publish := func(state []byte, id string) *abi.Request {
		return &abi.Request{Op: abi.OpPublish, Event: "dialog", Resource: bob, State: state,
			Publication: &abi.Publication{ID: id, ContentType: infoType, Body: body}}
	}
	res, err := sdk.Dispatch(m, publish(nil, "p1"))
	if err != nil || res.Code != 0 {
		b.Fatalf("%v %+v", err, res)
	}
	for _, c := range []struct {
		name string
		req  *abi.Request
	}{
		{"Publish", publish(res.State, "p2")},
		{"RenderNew", &abi.Request{Op: abi.OpRender, Event: "dialog", Resource: bob, State: res.State,
			Watchers: []abi.Watcher{{ID: "w1", URI: "sip:alice@example.com", Full: true}}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if res, err := sdk.Dispatch(m, c.req); err != nil || res.Code != 0 {
					b.Fatalf("%v %+v", err, res)
				}
			}
		})
	}
}
