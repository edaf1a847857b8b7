package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/sdktest"
)

// conf50 is a full document of a 50-participant conference: each user
// with one endpoint, audio and video.
func conf50() []byte {
	var b strings.Builder
	b.WriteString(head + ` state="full" version="1"><conference-description><subject>All hands</subject></conference-description>` +
		`<conference-state><user-count>50</user-count><active>true</active></conference-state><users>`)
	for i := range 50 {
		fmt.Fprintf(&b, `<user entity="sip:user%02d@example.com"><display-text>User %d</display-text>`+
			`<endpoint entity="sip:user%02d@pc.example.com"><status>connected</status><joining-method>dialed-in</joining-method>`+
			`<media id="1"><type>audio</type><label>a%d</label><status>sendrecv</status></media>`+
			`<media id="2"><type>video</type><label>v%d</label><status>sendonly</status></media></endpoint></user>`, i, i, i, i, i)
	}
	b.WriteString(`</users></conference-info>`)
	return []byte(b.String())
}

// partial50 mutes one participant and lets another leave.
var partial50 = []byte(head + ` state="partial" version="2"><conference-state><user-count>49</user-count></conference-state><users>` +
	`<user entity="sip:user17@example.com"><endpoint entity="sip:user17@pc.example.com"><media id="1"><status>recvonly</status></media></endpoint></user>` +
	`<user entity="sip:user33@example.com" state="deleted"/></users></conference-info>`)

type runner func(b *testing.B, req *abi.Request) *abi.Response

func wasmRunner(b *testing.B) runner {
	m := sdktest.Load(b, pkg, map[string]string{"use_partial_states": "true"})
	return func(b *testing.B, req *abi.Request) *abi.Response {
		res, err := m.Handle(context.Background(), req)
		if err != nil || res.Code != 0 {
			b.Fatalf("%v %+v", err, res)
		}
		return res
	}
}

// trustedRunner loads the module with trusted = true: no termination
// checks.
func trustedRunner(b *testing.B) runner {
	m := sdktest.LoadTrusted(b, pkg, map[string]string{"use_partial_states": "true"})
	return func(b *testing.B, req *abi.Request) *abi.Response {
		res, err := m.Handle(context.Background(), req)
		if err != nil || res.Code != 0 {
			b.Fatalf("%v %+v", err, res)
		}
		return res
	}
}

func nativeRunner(b *testing.B) runner {
	m := &conference{partial: true}
	return func(b *testing.B, req *abi.Request) *abi.Response {
		res, err := sdk.Dispatch(m, req)
		if err != nil || res.Code != 0 {
			b.Fatalf("%v %+v", err, res)
		}
		return res
	}
}

// setup publishes conf50 and returns the state and a partial-state
// watcher that has been sent it.
func setup(b *testing.B, run runner) ([]byte, abi.Watcher) {
	w := abi.Watcher{ID: "w", Full: true}
	res := run(b, publish(nil, "a", conf50()))
	state := res.State
	res = run(b, render(state, w))
	w.State, w.Full = res.Notifications[0].State, false
	return state, w
}

func benchMerge(b *testing.B, run runner, watchers ...abi.Watcher) {
	state, w := setup(b, run)
	ws := []abi.Watcher{}
	if len(watchers) > 0 {
		ws = append(ws, w)
	}
	b.ResetTimer()
	for b.Loop() {
		res := run(b, publish(state, "a", partial50, ws...))
		if len(ws) > 0 && (len(res.Notifications) != 1 || !res.Notifications[0].Partial) {
			b.Fatalf("%+v", res.Notifications)
		}
	}
}

func benchRender(b *testing.B, run runner) {
	state, _ := setup(b, run)
	b.ResetTimer()
	for b.Loop() {
		run(b, render(state, abi.Watcher{ID: "w", Full: true}))
	}
}

// One partial merge into a 50-participant conference, no watcher: parse,
// check, merge, store.
func BenchmarkMerge(b *testing.B) { benchMerge(b, wasmRunner(b)) }

// The same, and a partial NOTIFY for one watcher (compose, diff, verify).
func BenchmarkMergeNotify(b *testing.B) { benchMerge(b, wasmRunner(b), abi.Watcher{}) }

// One full render of a 50-participant conference for a new subscriber.
func BenchmarkRender(b *testing.B) { benchRender(b, wasmRunner(b)) }

func BenchmarkMergeTrusted(b *testing.B)       { benchMerge(b, trustedRunner(b)) }
func BenchmarkMergeNotifyTrusted(b *testing.B) { benchMerge(b, trustedRunner(b), abi.Watcher{}) }
func BenchmarkRenderTrusted(b *testing.B)      { benchRender(b, trustedRunner(b)) }

func BenchmarkMergeNative(b *testing.B)       { benchMerge(b, nativeRunner(b)) }
func BenchmarkMergeNotifyNative(b *testing.B) { benchMerge(b, nativeRunner(b), abi.Watcher{}) }
func BenchmarkRenderNative(b *testing.B)      { benchRender(b, nativeRunner(b)) }

// The cost of a call that does nearly nothing: an empty conference.
func BenchmarkRenderEmpty(b *testing.B) {
	run := wasmRunner(b)
	for b.Loop() {
		run(b, render(nil, abi.Watcher{ID: "w", Full: true}))
	}
}
