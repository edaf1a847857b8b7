package extension_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/logtest"
)

// The hostile test modules (testdata/*/main.go say what each body does).
const (
	hostilePkg = "github.com/presenced/presenced/internal/extension/testdata/hostile"
	rawabiPkg  = "github.com/presenced/presenced/internal/extension/testdata/rawabi"
	sandboxPkg = "github.com/presenced/presenced/internal/extension/testdata/sandbox"
)

// loadLimited loads pkg with one instance, so Stats().Instances shows
// whether the instance survived a call.
func loadLimited(t *testing.T, pkg string, memoryMB int, timeout time.Duration, log io.Writer) *extension.Module {
	t.Helper()
	if log == nil {
		log = io.Discard
	}
	m, err := extension.Load(context.Background(), extension.Spec{
		Name: filepath.Base(pkg), Path: extensiontest.Build(t, pkg), MemoryLimitMB: memoryMB,
		CallTimeout: timeout, Instances: 1,
		CacheDir: filepath.Join(os.TempDir(), "presenced-wasm-cache"),
		Logger:   slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// loadGrowing loads the hostile module with one instance that may grow to
// two while a call holds it.
func loadGrowing(t *testing.T) *extension.Module {
	t.Helper()
	m, err := extension.Load(context.Background(), extension.Spec{
		Name: "hostile", Path: extensiontest.Build(t, hostilePkg), MemoryLimitMB: 32,
		CallTimeout: hostileTimeout, Instances: 1, MaxInstances: 2,
		CacheDir: filepath.Join(os.TempDir(), "presenced-wasm-cache"),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func publishTo(event, body string) *abi.Request {
	return &abi.Request{Op: abi.OpPublish, Event: event, Resource: "sip:a@example.com",
		Publication: &abi.Publication{ID: "p1", ContentType: "text/plain", Body: []byte(body)},
		Watchers:    []abi.Watcher{{ID: "w1", URI: "sip:b@example.com"}}}
}

// instanceID asks the module which instance served the call.
func instanceID(t *testing.T, m *extension.Module, event string) string {
	t.Helper()
	res, err := m.Handle(context.Background(), publishTo(event, "id"))
	if err != nil || len(res.State) == 0 {
		t.Fatalf("id: %+v, %v", res, err)
	}
	return string(res.State)
}

// hostileTimeout is the call deadline of the hostile modules: short, so the
// loop and the sleep cost little, long enough for a sound call on a busy
// machine, which after a failure includes making a fresh instance (10-50 ms
// idle, more than 300 ms seen on two loaded cores).
const hostileTimeout = time.Second

// Each misbehaviour fails its own call, promptly, with *extension.Error
// saying what went wrong; the instance is discarded (the pool of one is
// empty after the call, and the next call is served by a new instance);
// and the module serves the next sound call.
func TestHostileModules(t *testing.T) {
	logs := &logtest.Buffer{}
	mods := map[string]*extension.Module{
		"hostile": loadLimited(t, hostilePkg, 32, hostileTimeout, logs),
		"raw":     loadLimited(t, rawabiPkg, 32, hostileTimeout, logs),
	}
	// Running into the memory cap takes a Go guest a few hundred
	// milliseconds of garbage collection: give it a deadline it cannot
	// reach, so that only the cap can end the call.
	mods["capped"] = loadLimited(t, hostilePkg, 32, 20*time.Second, logs)
	for _, c := range []struct {
		mod, event, body string
		want             []string // in the error
		stderr           string   // in the log line of the failed call
	}{
		// where the guest was when the deadline cut it short
		{"hostile", "hostile", "loop", []string{"deadline exceeded", "wasm stack trace", "main.hostile.Publish"}, ""},
		// a sleeping Go guest is parked in its scheduler, which on wasm
		// unwinds the goroutine's frames: only the export is left
		{"hostile", "hostile", "sleep", []string{"deadline exceeded", "wasm stack trace", "presenced_handle"}, ""},
		{"hostile", "hostile", "panic", []string{"wasm error: unreachable", "runtime.gopanic"}, "panic: hostile: boom"},
		// the Go runtime's "out of memory" throw, from the allocation
		{"capped", "hostile", "alloc", []string{"wasm error: unreachable", "runtime.throw", "runtime.mallocgc"}, ""},
		{"raw", "raw", "garbage", []string{"malformed response", "overflow"}, ""},
		{"raw", "raw", "badin", []string{"input_read: destination out of guest memory"}, ""},
		{"raw", "raw", "badout", []string{"output_write: source out of guest memory"}, ""},
		{"raw", "raw", "badlog", []string{"log: line out of guest memory"}, ""},
		{"raw", "raw", "hugelog", []string{"log: line out of guest memory"}, ""},
		{"raw", "raw", "huge", []string{"output over 16777216 bytes"}, ""},
		{"raw", "raw", "hugeone", []string{"output over 16777216 bytes"}, ""},
		{"raw", "raw", "neg", []string{"module returned"}, ""},
	} {
		t.Run(c.mod+"/"+c.body, func(t *testing.T) {
			m := mods[c.mod]
			before := instanceID(t, m, c.event)
			st := m.Stats()
			if st.Instances != 1 {
				t.Fatalf("before: %d instances, want 1", st.Instances)
			}

			start := time.Now()
			res, err := m.Handle(context.Background(), publishTo(c.event, c.body))
			took := time.Since(start)
			var xe *extension.Error
			if !errors.As(err, &xe) {
				t.Fatalf("got %+v, %v; want *extension.Error", res, err)
			}
			if xe.Extension != m.Name() || xe.Op != abi.OpPublish {
				t.Fatalf("err = %v (extension %q, op %s)", err, xe.Extension, xe.Op)
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v; want %q in it", err, want)
				}
			}
			if c.mod != "hostile" && strings.Contains(err.Error(), "deadline") {
				t.Fatalf("err = %v; the deadline, not the check, ended the call", err)
			}
			// a deadline ends the call within about the deadline; the rest
			// fail at once. 5 s is far below the 10 s sleep and far above
			// any honest scheduling delay.
			if took > 5*time.Second {
				t.Fatalf("the call took %v", took)
			}
			if c.stderr != "" && !strings.Contains(logs.String(), c.stderr) {
				t.Errorf("log lacks the guest's %q:\n%s", c.stderr, logs.String())
			}
			after := m.Stats()
			if after.Failures != st.Failures+1 || after.Calls != st.Calls+1 {
				t.Fatalf("stats %+v after %+v: want one more call, one more failure", after, st)
			}
			if after.Instances != 0 {
				t.Fatalf("the failed instance was kept: %d live", after.Instances)
			}

			res, err = m.Handle(context.Background(), publishTo(c.event, "after"))
			if err != nil || res.Code != 0 || string(res.State) != "after" {
				t.Fatalf("next call: %+v, %v", res, err)
			}
			if id := instanceID(t, m, c.event); id == before {
				t.Fatalf("instance %s served before and after the failure", id)
			}
			if st := m.Stats(); st.Instances != 1 {
				t.Fatalf("after: %d instances, want 1", st.Instances)
			}
		})
	}
}

// heapAfterGC is the host's live heap plus the linear memories of live
// instances, which are mapped outside it.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + uint64(extension.MappedBytes())
}

// memory_limit_mb caps the guest: the allocating call fails on the cap,
// not on the deadline, and repeated failures do not pile up in the host.
func TestHostileMemoryIsBounded(t *testing.T) {
	// a long deadline, so only the memory cap can end the "alloc" call
	m := loadLimited(t, hostilePkg, 32, 20*time.Second, nil)
	raw := loadLimited(t, rawabiPkg, 32, 20*time.Second, nil)

	fail := func(m *extension.Module, event, body, want string) {
		t.Helper()
		start := time.Now()
		_, err := m.Handle(context.Background(), publishTo(event, body))
		var xe *extension.Error
		if !errors.As(err, &xe) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: err = %v, want *extension.Error with %q", body, err, want)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%s took %v", body, d)
		}
	}
	// the Go runtime's out-of-memory throw, in the allocation
	const oom, capped = "runtime.mallocgc", "output over 16777216 bytes"
	fail(m, "hostile", "alloc", oom)
	fail(raw, "raw", "huge", capped)
	base := heapAfterGC()

	// 8 capped guests are 256 MiB of linear memory: kept, they would show.
	const rounds = 8
	for range rounds {
		fail(m, "hostile", "alloc", oom)
		fail(raw, "raw", "huge", capped)
	}
	grown := int64(heapAfterGC()) - int64(base)
	t.Logf("live heap %d MiB before %d rounds, grown by %d MiB after", base>>20, rounds, grown>>20)
	if grown > 64<<20 {
		t.Fatalf("the live heap grew by %d MiB over %d failed rounds", grown>>20, rounds)
	}

	// The 100 MiB body is cut at the output cap, not buffered: it costs
	// the host no more than a body of 20 MiB, which also passes the cap.
	// (Each costs some tens of MiB: the 16 MiB kept and the copies of
	// growing it, and the guest's linear memory.)
	allocated := func(body string) uint64 {
		var ms0, ms1 runtime.MemStats
		instanceID(t, raw, "raw") // a fresh instance, made outside the count
		runtime.ReadMemStats(&ms0)
		fail(raw, "raw", body, capped)
		runtime.ReadMemStats(&ms1)
		return ms1.TotalAlloc - ms0.TotalAlloc
	}
	small, huge := allocated("stream=20"), allocated("huge")
	t.Logf("the host allocated %d MiB for a 20 MiB body, %d MiB for a 100 MiB one", small>>20, huge>>20)
	if huge > small+16<<20 {
		t.Fatalf("the 80 MiB past the cap cost the host %d MiB", (huge-small)>>20)
	}
	var ms0, ms1 runtime.MemStats
	instanceID(t, raw, "raw")
	runtime.ReadMemStats(&ms0)
	fail(raw, "raw", "hugeone", capped)
	runtime.ReadMemStats(&ms1)
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 16<<20 {
		t.Fatalf("one 100 MB output_write made the host allocate %d MiB", alloc>>20)
	}
}

// A module cannot reach the host's file system, network or environment.
// It can read the real clocks and sleep: the ABI grants that (Go's garbage
// collector needs them), so the test checks they work as documented.
func TestSandbox(t *testing.T) {
	m := loadLimited(t, sandboxPkg, 64, 5*time.Second, nil)

	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("the host's secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	escaped := filepath.Join(dir, "escaped")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Setenv("PRESENCED_SANDBOX_SECRET", "leaked")

	addr := l.Addr().String()
	body := "read=" + secret + "\nwrite=" + escaped + "\ndial=" + addr + "\nlisten=" + addr
	req := publishTo("sandbox", body)
	hostNow := time.Now()
	res, err := m.Handle(context.Background(), req)
	if err != nil || res.Code != 0 {
		t.Fatalf("%+v, %v", res, err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(res.State), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
		t.Logf("%s = %s", k, v)
	}
	for _, probe := range []string{"read " + secret, "write " + escaped, "dial " + addr,
		"read /etc/passwd", "readdir /", "readdir ."} {
		v, ok := got[probe]
		if !ok || !strings.HasPrefix(v, "err ") {
			t.Errorf("%s: %q, want an error", probe, v)
		}
	}
	for probe, want := range map[string]string{"env HOME": "", "environ": "0", "args": "0"} {
		if got[probe] != want {
			t.Errorf("%s = %q, want %q", probe, got[probe], want)
		}
	}
	if _, err := os.Stat(escaped); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the module created %s: %v", escaped, err)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the module connected to the host %d times", n)
	}
	// Go's wasip1 net package fakes sockets inside the guest, so binding
	// may "succeed"; it cannot be the host's socket, which this test holds.
	if v := got["listen "+addr]; !strings.HasPrefix(v, "err ") && !strings.HasPrefix(v, "ok ") {
		t.Errorf("listen %s: %q", addr, v)
	}

	// Granted: the real wall clock, and sleeping.
	now, err := strconv.ParseInt(got["now"], 10, 64)
	if err != nil {
		t.Fatalf("now = %q", got["now"])
	}
	if d := time.Unix(0, now).Sub(hostNow); d < -time.Second || d > 10*time.Second {
		t.Errorf("the guest's clock is %v off the host's", d)
	}
	if slept, _ := strconv.ParseInt(got["slept"], 10, 64); slept < int64(time.Millisecond) {
		t.Errorf("a 1 ms sleep took %d ns on the guest's monotonic clock", slept)
	}
}

// A call held by a loop does not make a call to another presentity wait
// for its deadline: the pool grows past Instances, up to MaxInstances,
// and at that cap a call waits as before (ErrBusy when its wait ends).
func TestHeldPoolGrows(t *testing.T) {
	m := loadGrowing(t)
	loop := func() chan error {
		done := make(chan error, 1)
		go func() {
			_, err := m.Handle(context.Background(), publishTo("hostile", "loop"))
			done <- err
		}()
		return done
	}
	first := loop()
	time.Sleep(50 * time.Millisecond) // the only instance loops
	res, err := m.Handle(context.Background(), publishTo("hostile", "other"))
	if err != nil || string(res.State) != "other" {
		t.Fatalf("beside a loop: %+v, %v", res, err)
	}
	select {
	case err := <-first:
		t.Fatalf("the call waited for the loop to end (%v)", err)
	default:
	}
	if st := m.Stats(); st.Instances != 2 || st.MaxInstances != 2 {
		t.Fatalf("%+v: want 2 instances of at most 2", st)
	}

	// two loops hold both instances: at the cap, a call waits
	second := loop()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := m.Handle(ctx, publishTo("hostile", "other")); !errors.Is(err, extension.ErrBusy) {
		t.Fatalf("at the cap: err = %v, want ErrBusy", err)
	}
	if st := m.Stats(); st.Instances != 2 {
		t.Fatalf("%d instances, want 2 (the cap)", st.Instances)
	}
	<-first
	<-second

	// The resource's calls overran: its next loop holds the first
	// instance, and its next call neither grows the pool nor takes the
	// surplus instance, which stays for other resources.
	third := loop()
	time.Sleep(50 * time.Millisecond)
	other := publishTo("hostile", "other")
	other.Resource = "sip:other@example.com"
	if res, err := m.Handle(context.Background(), other); err != nil || string(res.State) != "other" {
		t.Fatalf("another resource beside the loop: %+v, %v", res, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := m.Handle(ctx, publishTo("hostile", "other")); !errors.Is(err, extension.ErrBusy) {
		t.Fatalf("the overrun resource: err = %v, want ErrBusy", err)
	}
	<-third
}

// A surplus instance made while a loop held the pool is let go of once
// it has been idle for the linger, though no call comes to bring it back:
// after a burst the pool shrinks to Instances, and a call then still
// finds one.
func TestIdleSurplusLetGo(t *testing.T) {
	m := loadGrowing(t)
	m.SetSurplusLinger(300 * time.Millisecond)
	fine := func() {
		t.Helper()
		if res, err := m.Handle(context.Background(), publishTo("hostile", "other")); err != nil || string(res.State) != "other" {
			t.Fatalf("call: %+v, %v", res, err)
		}
	}
	// a call that finds none idle makes the first instance, kept for good
	fine()
	loop := make(chan error, 1)
	go func() {
		_, err := m.Handle(context.Background(), publishTo("hostile", "loop"))
		loop <- err
	}()
	time.Sleep(50 * time.Millisecond) // the only instance loops
	fine()                            // made the surplus instance
	if st := m.Stats(); st.Instances != 2 {
		t.Fatalf("%+v: want 2 instances beside the loop", st)
	}
	<-loop // the loop's instance is dropped at its deadline
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats().Instances != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%+v: the idle surplus instance was kept", m.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	fine()
	if st := m.Stats(); st.Instances != 1 {
		t.Fatalf("%+v: want the one instance the call made", st)
	}
}

// A module that fails After times in a row is not called for a while:
// calls fail at once with ErrBackoff (neither calls nor failures, and the
// module never sees them); then one call is let through, whose failure
// doubles the wait and whose success ends it.
func TestBackoff(t *testing.T) {
	m, err := extension.Load(context.Background(), extension.Spec{
		Name: "hostile", Path: extensiontest.Build(t, hostilePkg), MemoryLimitMB: 32,
		CallTimeout: hostileTimeout, Instances: 1,
		Backoff:  extension.Backoff{After: 3, Window: time.Minute, First: 300 * time.Millisecond, Max: 600 * time.Millisecond},
		CacheDir: filepath.Join(os.TempDir(), "presenced-wasm-cache"),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	call := func(body string) error {
		_, err := m.Handle(context.Background(), publishTo("hostile", body))
		return err
	}
	refused := func(want time.Duration) {
		t.Helper()
		before := m.Stats()
		err := call("fine")
		var xe *extension.Error
		if !errors.Is(err, extension.ErrBackoff) || !errors.As(err, &xe) || xe.RetryAfter <= 0 || xe.RetryAfter > want {
			t.Fatalf("err = %v, want ErrBackoff for at most %v", err, want)
		}
		after := m.Stats()
		if after.Calls != before.Calls || after.Failures != before.Failures || after.Refused != before.Refused+1 {
			t.Fatalf("stats %+v after %+v: want only one more refused", after, before)
		}
		if after.BackoffUntil.IsZero() {
			t.Fatalf("stats %+v: no back-off shown", after)
		}
	}
	waitOut := func() {
		time.Sleep(time.Until(m.Stats().BackoffUntil) + 10*time.Millisecond)
	}

	// a success between failures starts the count again
	for _, body := range []string{"panic", "panic", "fine", "panic", "panic"} {
		call(body)
	}
	if st := m.Stats(); st.FailuresInARow != 2 || !st.BackoffUntil.IsZero() {
		t.Fatalf("stats %+v: want 2 failures in a row, no back-off", st)
	}
	call("panic")
	refused(300 * time.Millisecond)

	waitOut()
	if err := call("panic"); err == nil || errors.Is(err, extension.ErrBackoff) {
		t.Fatalf("the probe: err = %v, want its failure", err)
	}
	refused(600 * time.Millisecond) // doubled

	waitOut()
	if err := call("fine"); err != nil {
		t.Fatalf("the probe: %v", err)
	}
	if err := call("fine"); err != nil {
		t.Fatalf("after the probe: %v", err)
	}
	if st := m.Stats(); st.FailuresInARow != 0 || !st.BackoffUntil.IsZero() {
		t.Fatalf("stats %+v after the probe succeeded", st)
	}
}
