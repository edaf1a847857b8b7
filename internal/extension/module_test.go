package extension_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/extension/extensiontest"
)

const echoPkg = "github.com/presenced/presenced/internal/extension/testdata/echo"

func publish(body string) *abi.Request {
	return &abi.Request{Op: abi.OpPublish, Event: "echo", Resource: "sip:a@example.com",
		Publication: &abi.Publication{ID: "p1", ContentType: "text/plain", Body: []byte(body)},
		Watchers:    []abi.Watcher{{ID: "w1", URI: "sip:b@example.com"}}}
}

func TestManifestAndPublish(t *testing.T) {
	m := extensiontest.Load(t, echoPkg, nil)
	man := m.Manifest()
	if len(man.Packages) != 1 || man.Packages[0].Event != "echo" || man.Packages[0].DefaultExpires != 60 {
		t.Fatalf("manifest = %+v", man)
	}
	res, err := m.Handle(context.Background(), publish("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.StateChanged || string(res.State) != "hello" || len(res.Notifications) != 1 ||
		res.Notifications[0].WatcherID != "w1" || string(res.Notifications[0].Body) != "hello" {
		t.Fatalf("response = %+v", res)
	}
}

func TestRejectIsAnAnswerNotAFailure(t *testing.T) {
	m := extensiontest.Load(t, echoPkg, nil)
	res, err := m.Handle(context.Background(), publish("bad"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 400 || res.Reason != "bad body" {
		t.Fatalf("response = %+v", res)
	}
	if s := m.Stats(); s.Failures != 0 {
		t.Fatalf("failures = %d", s.Failures)
	}
}

// Each failure mode fails its own call with *extension.Error, discards the
// instance, and leaves the module serving the next call.
func TestFailuresDiscardTheInstance(t *testing.T) {
	path := extensiontest.Build(t, echoPkg)
	m, err := extension.Load(context.Background(), extension.Spec{Name: "echo", Path: path,
		MemoryLimitMB: 64, CallTimeout: 300 * time.Millisecond, Instances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	for _, body := range []string{"panic", "loop", "huge"} {
		t.Run(body, func(t *testing.T) {
			_, err := m.Handle(context.Background(), publish(body))
			var xe *extension.Error
			if !errors.As(err, &xe) {
				t.Fatalf("err = %v, want *extension.Error", err)
			}
			res, err := m.Handle(context.Background(), publish("after"))
			if err != nil || string(res.State) != "after" {
				t.Fatalf("next call: %+v, %v", res, err)
			}
		})
	}
	if s := m.Stats(); s.Failures != 3 || s.Instances != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestRefusesAForeignFile(t *testing.T) {
	_, err := extension.Load(context.Background(), extension.Spec{Name: "x", Path: "testdata/echo/main.go"})
	if err == nil || !strings.Contains(err.Error(), `load extension "x"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestRefusesAnotherABIVersion(t *testing.T) {
	path := extensiontest.Build(t, "github.com/presenced/presenced/internal/extension/testdata/v2")
	_, err := extension.Load(context.Background(), extension.Spec{Name: "v2", Path: path})
	if err == nil || !strings.Contains(err.Error(), "module needs presenced ABI v2.0, this host speaks v1.2") {
		t.Fatalf("err = %v", err)
	}
}

// A saturated pool is overload, not failure: the waiting call gets
// ErrBusy when its deadline passes, nothing is counted as a failure, and
// no instance is lost.
func TestBusyPool(t *testing.T) {
	path := extensiontest.Build(t, "github.com/presenced/presenced/internal/extension/testdata/hostile")
	m, err := extension.Load(context.Background(), extension.Spec{Name: "hostile", Path: path,
		MemoryLimitMB: 64, CallTimeout: 3 * time.Second, Instances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	req := func(body string) *abi.Request {
		return &abi.Request{Op: abi.OpPublish, Event: "hostile", Resource: "sip:a@example.com",
			Publication: &abi.Publication{ID: "p", ContentType: "text/plain", Body: []byte(body)}}
	}
	done := make(chan struct{})
	go func() { m.Handle(context.Background(), req("sleep")); close(done) }()
	time.Sleep(200 * time.Millisecond) // the only instance is asleep
	before := m.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = m.Handle(ctx, req("hello"))
	if !errors.Is(err, extension.ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if after := m.Stats(); after.Failures != before.Failures || after.Calls != before.Calls {
		t.Fatalf("a busy wait was counted: %+v -> %+v", before, after)
	}
	<-done
}

// BenchmarkCall is the floor of any module call, trusted (as pa and
// conference run) and with termination checks: the echo module's Render of
// a 300-byte state for one watcher, the ABI's encode, copy in, decode,
// encode, copy out and decode, and nothing else.
func BenchmarkCall(b *testing.B) {
	for _, trusted := range []bool{true, false} {
		b.Run(map[bool]string{true: "trusted", false: "checked"}[trusted], func(b *testing.B) {
			m, err := extension.Load(context.Background(), extension.Spec{Name: "echo", Path: extensiontest.Build(b, echoPkg),
				MemoryLimitMB: 64, CallTimeout: 10 * time.Second, Instances: 1, Trusted: trusted})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close(context.Background())
			req := &abi.Request{Op: abi.OpRender, Event: "echo", Resource: "sip:alice@example.com",
				State: bytes.Repeat([]byte("x"), 300), Watchers: []abi.Watcher{{ID: "w1", URI: "sip:bob@example.com", Full: true}}}
			for b.Loop() {
				if res, err := m.Handle(context.Background(), req); err != nil || len(res.Notifications) != 1 {
					b.Fatal(err, res)
				}
			}
		})
	}
}
