// Package conformance is the module conformance kit: Run checks any .wasm
// file, whatever language it was written in, against the contract of
// abi/ABI.md, under go test. It checks what a module must do for the host
// to run it safely; what its documents mean is for the module's own tests.
// README.md beside this file lists the checks and how to run them.
package conformance

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
	"github.com/tetratelabs/wazero/api"
)

// Sample is a publication body for one event package.
type Sample struct {
	ContentType string
	Body        []byte
}

// Options say how to run a module and what to publish to it.
type Options struct {
	// Name is the extension's name given to init; the file's name without
	// .wasm if empty.
	Name string
	// Config is the extension's config table, flattened (ABI.md §4).
	Config map[string]string
	// Resource is the presentity every request is about, canonical
	// (ABI.md §4); "sip:alice@example.com" if empty. Samples name it.
	Resource string
	// Accept is, for each event package whose manifest accepts
	// publications, a publication the module accepts for Resource. A
	// package that accepts publications and has none here fails the run.
	Accept map[string]Sample
	// Refuse is, for any event package, a publication the module must
	// refuse (a 4xx, say a malformed document); a package without one
	// is not checked for refusals.
	Refuse map[string]Sample
	// Timeout bounds each call; 5 seconds if 0.
	Timeout time.Duration
}

// Run checks the module in the file wasmPath, each check a subtest of t.
func Run(t *testing.T, wasmPath string, opts Options) {
	t.Helper()
	if opts.Name == "" {
		opts.Name = strings.TrimSuffix(filepath.Base(wasmPath), ".wasm")
	}
	if opts.Resource == "" {
		opts.Resource = "sip:alice@example.com"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	ctx := context.Background()
	g, _, err := compile(ctx, wasmPath, opts.Timeout)
	if err != nil {
		t.Fatalf("%s: %v", wasmPath, err)
	}
	t.Cleanup(func() { g.rt.Close(ctx) })
	k := &kit{g: g, opts: opts, path: wasmPath}

	if !t.Run("exports", k.exports) {
		return // nothing else can be called
	}
	if !t.Run("manifest", k.manifest) {
		return
	}
	t.Run("host", k.host)
	t.Run("decode-error", k.decodeError)
	t.Run("unsupported-op", k.unsupportedOp)
	t.Run("refusal", k.refusal)
	if !t.Run("script", k.runScript) {
		return // the checks below replay the script
	}
	t.Run("same-output-any-instance", k.anyInstance)
	t.Run("reuse", k.reuse)
	t.Run("output-cap", k.outputCap)
	t.Run("after-trap", k.afterTrap)
}

type kit struct {
	g    *guest
	opts Options
	path string
	man  abi.Manifest
	// script is a run of requests each package gets, with the output of
	// its first run, which every later run must repeat byte for byte.
	script []step
}

type step struct {
	what string
	op   uint32
	in   []byte
	out  []byte
}

// fresh returns a new instance that has run init with the options' config.
func (k *kit) fresh(t *testing.T) *instance {
	t.Helper()
	ctx := context.Background()
	in := k.bare(t)
	init := abi.InitRequest{Name: k.opts.Name, Config: k.opts.Config}
	if r := in.init(ctx, init.Marshal()); r.trap != nil || r.status != abi.StatusOK {
		t.Fatalf("presenced_init: %s", r)
	}
	return in
}

// exports: ABI.md §1 and §2, and the imports of §3.
func (k *kit) exports(t *testing.T) {
	c := k.g.compiled
	if _, ok := c.ExportedMemories()["memory"]; !ok {
		t.Error(`no memory exported as "memory"`)
	}
	fns := c.ExportedFunctions()
	i32 := api.ValueTypeI32
	want := map[string][2][]api.ValueType{
		abi.ExportInitialize: {nil, nil},
		abi.ExportInit:       {{i32}, {i32}},
		abi.ExportHandle:     {{i32, i32}, {i32}},
	}
	var markers []string
	for name := range fns {
		if strings.HasPrefix(name, "presenced_abi_v") {
			markers = append(markers, name)
			want[name] = [2][]api.ValueType{nil, nil}
		}
		if name == "_start" {
			t.Error("exports _start: a module is a WASI reactor (clang: -mexec-model=reactor; Go: -buildmode=c-shared)")
		}
	}
	for name, sig := range want {
		f, ok := fns[name]
		if !ok {
			t.Errorf("no export %s", name)
			continue
		}
		if !slices.Equal(f.ParamTypes(), sig[0]) || !slices.Equal(f.ResultTypes(), sig[1]) {
			t.Errorf("export %s is (%v) -> (%v), want (%v) -> (%v)", name, names(f.ParamTypes()), names(f.ResultTypes()), names(sig[0]), names(sig[1]))
		}
	}
	switch {
	case len(markers) == 0:
		t.Errorf("no ABI marker export: want %s", abi.ExportMarker)
	case len(markers) > 1:
		t.Errorf("several ABI markers: %v", markers)
	default:
		var major, minor int
		if _, err := fmt.Sscanf(markers[0], "presenced_abi_v%d_%d", &major, &minor); err != nil ||
			fmt.Sprintf("presenced_abi_v%d_%d", major, minor) != markers[0] {
			t.Errorf("malformed ABI marker %q", markers[0])
		} else if major != abi.Major || minor > abi.Minor {
			t.Errorf("marker %s: this kit checks ABI v%d.%d", markers[0], abi.Major, abi.Minor)
		}
	}
	host := map[string][2][]api.ValueType{
		abi.ImportInputRead:   {{i32, i32, i32}, {i32}},
		abi.ImportOutputWrite: {{i32, i32}, {i32}},
		abi.ImportLog:         {{i32, i32, i32}, {i32}},
	}
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case "wasi_snapshot_preview1":
		case abi.ImportModule:
			sig, ok := host[name]
			if !ok {
				t.Errorf("imports %s.%s, which ABI v%d.%d does not have", mod, name, abi.Major, abi.Minor)
			} else if !slices.Equal(f.ParamTypes(), sig[0]) || !slices.Equal(f.ResultTypes(), sig[1]) {
				t.Errorf("imports %s.%s as (%v) -> (%v), want (%v) -> (%v)", mod, name, names(f.ParamTypes()), names(f.ResultTypes()), names(sig[0]), names(sig[1]))
			}
		default:
			t.Errorf("imports %s.%s: a module imports only %s and wasi_snapshot_preview1", mod, name, abi.ImportModule)
		}
	}
}

func names(ts []api.ValueType) string {
	var s []string
	for _, t := range ts {
		s = append(s, api.ValueTypeName(t))
	}
	return strings.Join(s, ", ")
}

// manifest: init answers the config with a manifest the host can serve,
// and undecodable input with -1.
func (k *kit) manifest(t *testing.T) {
	ctx := context.Background()
	init := abi.InitRequest{Name: k.opts.Name, Config: k.opts.Config}
	r := k.bare(t).init(ctx, init.Marshal())
	if r.trap != nil || r.status != abi.StatusOK {
		t.Fatalf("presenced_init: %s, want status 0", r)
	}
	if err := k.man.Unmarshal(r.output); err != nil {
		t.Fatalf("presenced_init wrote no Manifest: %v", err)
	}
	if len(k.man.Packages) == 0 {
		t.Error("the manifest lists no event package")
	}
	events := map[string]bool{}
	for _, p := range k.man.Packages {
		if !isToken(p.Event) {
			t.Errorf("package %q: an event package name is a token (RFC 6665 §8.2.1)", p.Event)
		}
		if events[p.Event] {
			t.Errorf("package %q listed twice", p.Event)
		}
		events[p.Event] = true
		for _, a := range p.Accept {
			if typ, sub, ok := strings.Cut(abi.MediaType(a), "/"); !ok || !isToken(typ) || !isToken(sub) {
				t.Errorf("package %q accepts %q: not a type/subtype", p.Event, a)
			}
		}
		if p.MinExpires != 0 && p.MaxExpires != 0 && p.MinExpires > p.MaxExpires {
			t.Errorf("package %q: min_expires %d above max_expires %d", p.Event, p.MinExpires, p.MaxExpires)
		}
		if len(p.Accept) > 0 && len(k.opts.Accept[p.Event].Body) == 0 {
			t.Errorf("package %q accepts publications: give the kit one it accepts (Options.Accept[%q])", p.Event, p.Event)
		}
	}
	for _, p := range k.man.Packages {
		if p.WatcherInfoOf != "" && (!events[p.WatcherInfoOf] || p.WatcherInfoOf == p.Event) {
			t.Errorf("package %q is the watcher info of %q, which is not another package of the manifest", p.Event, p.WatcherInfoOf)
		}
	}
	cmds := map[string]bool{}
	for _, c := range k.man.Commands {
		if c == "" || cmds[c] {
			t.Errorf("command %q is empty or listed twice", c)
		}
		cmds[c] = true
	}
	if r := k.bare(t).init(ctx, garbage); r.trap != nil || r.status != abi.StatusBadInput {
		t.Errorf("presenced_init with undecodable input: %s, want status -1", r)
	}
}

// bare is a new instance that has not run init, for calling init itself.
func (k *kit) bare(t *testing.T) *instance {
	in, err := k.g.instance(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.close(context.Background()) })
	return in
}

// garbage is not a protobuf message: field 1, length-delimited, whose
// length runs past the end.
var garbage = []byte{0x0a, 0xff, 0xff}

// isToken reports whether s is an RFC 3261 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}

// host: the host loads the module and gets the same manifest.
func (k *kit) host(t *testing.T) {
	ctx := context.Background()
	m, err := extension.Load(ctx, extension.Spec{Name: k.opts.Name, Path: k.path, MemoryLimitMB: 64,
		CallTimeout: k.opts.Timeout, Instances: 1, Config: k.opts.Config, CacheDir: cacheDir()})
	if err != nil {
		t.Fatalf("the host refuses the module: %v", err)
	}
	defer m.Close(ctx)
	if got := m.Manifest(); !bytes.Equal(got.Marshal(), k.man.Marshal()) {
		t.Errorf("the host read manifest %+v, the kit %+v", got, k.man)
	}
}

func (k *kit) request(op abi.Op, event string) *abi.Request {
	return &abi.Request{Op: op, Event: event, Resource: k.opts.Resource, NowUnixNano: now}
}

// now is the clock every request carries, so that outputs can be compared.
const now = int64(1_700_000_000_000_000_000)

// decodeError: undecodable input to presenced_handle is -1.
func (k *kit) decodeError(t *testing.T) {
	in := k.fresh(t)
	if r := in.handle(context.Background(), uint32(abi.OpRender), &call{input: garbage}); r.trap != nil || r.status != abi.StatusBadInput {
		t.Errorf("presenced_handle with undecodable input: %s, want status -1", r)
	}
}

// unsupportedOp: an op no ABI version has is -2.
func (k *kit) unsupportedOp(t *testing.T) {
	const op = 99
	in := k.fresh(t)
	req := k.request(op, k.man.Packages[0].Event)
	if r := in.handle(context.Background(), op, &call{input: req.Marshal()}); r.trap != nil || r.status != abi.StatusUnsupported {
		t.Errorf("op %d: %s, want status -2", op, r)
	}
}

// decode reads a call's Response, failing the test unless the call
// returned 0 and a Response.
func decode(t *testing.T, what string, r result) *abi.Response {
	t.Helper()
	if r.trap != nil || r.status != abi.StatusOK {
		t.Fatalf("%s: %s, want status 0", what, r)
	}
	res := &abi.Response{}
	if err := res.Unmarshal(r.output); err != nil {
		t.Fatalf("%s: output is not a Response: %v", what, err)
	}
	return res
}

// refusal: a publication the module refuses is status 0 with a SIP code
// and a reason, and changes nothing; it is not a failure (a negative
// status or a trap), which the host would answer with 500.
func (k *kit) refusal(t *testing.T) {
	in := k.fresh(t)
	checked := 0
	for _, p := range k.man.Packages {
		s, ok := k.opts.Refuse[p.Event]
		if !ok {
			continue
		}
		checked++
		req := k.request(abi.OpPublish, p.Event)
		req.Publication = &abi.Publication{ID: "p1", ContentType: s.ContentType, Body: s.Body, ExpiresUnix: now/1e9 + 3600}
		req.Watchers = []abi.Watcher{{ID: "w1", URI: k.opts.Resource, Status: abi.StatusActive}}
		res := decode(t, p.Event+": publish of the Refuse sample", in.handle(context.Background(), uint32(abi.OpPublish), &call{input: req.Marshal()}))
		switch {
		case res.Code < 300 || res.Code > 699:
			t.Errorf("%s: publish of the Refuse sample answered code %d, want a SIP refusal (300-699)", p.Event, res.Code)
		case res.Reason == "":
			t.Errorf("%s: refusal %d without a reason: the Warning header would say nothing", p.Event, res.Code)
		case res.StateChanged || len(res.Notifications) > 0:
			t.Errorf("%s: refusal %d changed state or notified: a refusal changes nothing", p.Event, res.Code)
		}
	}
	if checked == 0 {
		t.Skip("no Options.Refuse sample")
	}
}

// runScript runs, for every package, a render on empty state, a publish
// of its Accept sample (if it takes publications), a render of the new
// state and an unpublish, on one instance, checking each answer, and keeps
// the outputs for the checks after it.
func (k *kit) runScript(t *testing.T) {
	ctx := context.Background()
	in := k.fresh(t)
	watcher := func(full bool) []abi.Watcher {
		// The presentity watches itself: a watcher every package takes,
		// watcher-info packages included (RFC 3857 lets only the
		// presentity watch its watchers).
		return []abi.Watcher{{ID: "w1", URI: k.opts.Resource, Full: full, Status: abi.StatusActive}}
	}
	run := func(what string, req *abi.Request) *abi.Response {
		input := req.Marshal()
		r := in.handle(ctx, uint32(req.Op), &call{input: input})
		res := decode(t, what, r)
		if res.Code != 0 {
			t.Fatalf("%s: refused %d %s", what, res.Code, res.Reason)
		}
		seen := map[string]bool{}
		for _, n := range res.Notifications {
			if n.WatcherID != "w1" || seen[n.WatcherID] {
				t.Errorf("%s: notification for watcher %q: want at most one, for the watcher given (w1)", what, n.WatcherID)
			}
			seen[n.WatcherID] = true
		}
		k.script = append(k.script, step{what: what, op: uint32(req.Op), in: input, out: r.output})
		return res
	}
	for _, p := range k.man.Packages {
		req := k.request(abi.OpRender, p.Event)
		req.Watchers = watcher(true)
		if res := run(p.Event+": render, no state", req); res.StateChanged {
			t.Errorf("%s: render changed state: a render must not", p.Event)
		}
		s, ok := k.opts.Accept[p.Event]
		if len(p.Accept) == 0 || !ok {
			continue
		}
		req = k.request(abi.OpPublish, p.Event)
		req.Publication = &abi.Publication{ID: "p1", ContentType: s.ContentType, Body: s.Body, ExpiresUnix: now/1e9 + 3600}
		req.Watchers = watcher(false)
		res := run(p.Event+": publish of the Accept sample", req)
		if !res.StateChanged {
			t.Errorf("%s: a new publication left state unchanged: a later render could not show it", p.Event)
		}
		state := res.State
		req = k.request(abi.OpRender, p.Event)
		req.State, req.Watchers = state, watcher(true)
		if res := run(p.Event+": render of the published state", req); res.StateChanged {
			t.Errorf("%s: render changed state: a render must not", p.Event)
		}
		req = k.request(abi.OpUnpublish, p.Event)
		req.State, req.Publication, req.Watchers = state, &abi.Publication{ID: "p1"}, watcher(false)
		run(p.Event+": unpublish", req)
	}
}

// anyInstance: a module keeps nothing between calls that matters, so the
// script's requests give the same outputs on an instance that runs them in
// the opposite order, and on one that runs only the last.
func (k *kit) anyInstance(t *testing.T) {
	ctx := context.Background()
	in := k.fresh(t)
	for i := len(k.script) - 1; i >= 0; i-- {
		s := k.script[i]
		r := in.handle(ctx, s.op, &call{input: s.in})
		k.same(t, s, r, "on an instance that ran the later requests first")
	}
	last := k.script[len(k.script)-1]
	k.same(t, last, k.fresh(t).handle(ctx, last.op, &call{input: last.in}), "on a new instance")
}

// reuse: a rendering a module offers for reuse (reuse_until) is what the
// module renders for another watcher alike, of another ID and URI, from
// the same state before reuse_until: the host will hand it to that
// watcher without asking.
func (k *kit) reuse(t *testing.T) {
	ctx := context.Background()
	for _, s := range k.script {
		if s.op != uint32(abi.OpRender) {
			continue
		}
		var req abi.Request
		var first abi.Response
		if req.Unmarshal(s.in) != nil || first.Unmarshal(s.out) != nil || len(first.Notifications) != 1 ||
			first.Notifications[0].ReuseUntilUnixNano <= req.NowUnixNano {
			continue
		}
		req.Watchers[0].ID, req.Watchers[0].URI = "w-other", "sip:another.watcher@example.net"
		res := decode(t, s.what+", for another watcher", k.fresh(t).handle(ctx, s.op, &call{input: req.Marshal()}))
		a, b := first.Notifications[0], abi.Notification{}
		if len(res.Notifications) == 1 {
			b = res.Notifications[0]
		}
		a.WatcherID, b.WatcherID = "", ""
		if len(res.Notifications) != 1 || a.ContentType != b.ContentType || !bytes.Equal(a.Body, b.Body) ||
			a.Partial != b.Partial || a.Status != b.Status || a.StateChanged != b.StateChanged || !bytes.Equal(a.State, b.State) {
			t.Errorf("%s: offered for reuse until %d, but another watcher alike gets\n%s\nnot\n%s",
				s.what, a.ReuseUntilUnixNano, show(res), show(&first))
		}
	}
}

// same fails t unless r repeats s's output.
func (k *kit) same(t *testing.T, s step, r result, where string) {
	t.Helper()
	if r.trap != nil || r.status != abi.StatusOK {
		t.Errorf("%s, %s: %s, where the first run gave status 0", s.what, where, r)
		return
	}
	if !bytes.Equal(r.output, s.out) {
		var a, b abi.Response
		_ = a.Unmarshal(s.out)
		_ = b.Unmarshal(r.output)
		t.Errorf("%s, %s: another output for the same state and input\nfirst: %s\nthen:  %s", s.what, where, show(&a), show(&b))
	}
}

func show(r *abi.Response) string {
	var b strings.Builder
	fmt.Fprintf(&b, "code %d %q, state changed %v (%d bytes)", r.Code, r.Reason, r.StateChanged, len(r.State))
	for _, n := range r.Notifications {
		fmt.Fprintf(&b, "; to %s: %q", n.WatcherID, n.Body)
	}
	return b.String()
}

// outputCap: when output_write refuses (-4: the output would pass the
// host's cap), the module stops and fails the call, rather than going on
// or answering 0 with a cut output.
func (k *kit) outputCap(t *testing.T) {
	s := k.biggest()
	in := k.fresh(t)
	c := &call{input: s.in, outputCap: len(s.out) / 2}
	r := in.handle(context.Background(), s.op, c)
	switch {
	case !c.refused:
		t.Fatalf("%s: the module wrote %d bytes of its %d-byte output with output_write refusing past %d", s.what, len(r.output), len(s.out), c.outputCap)
	case r.trap == nil && r.status >= 0:
		t.Errorf("%s: output_write answered -4 and the module returned %s: it must return a negative status (or trap)", s.what, r)
	}
}

// biggest is the step of the script with the most output.
func (k *kit) biggest() step {
	b := k.script[0]
	for _, s := range k.script {
		if len(s.out) > len(b.out) {
			b = s
		}
	}
	return b
}

// afterTrap: a call that traps fails (it does not answer), and the host's
// next instance, given the same state and input, answers as if the trap
// never happened: the trap lost nothing the module needed.
func (k *kit) afterTrap(t *testing.T) {
	ctx := context.Background()
	s := k.biggest()
	in := k.fresh(t)
	if r := in.handle(ctx, s.op, &call{input: s.in, trap: true}); r.trap == nil {
		t.Errorf("%s with input_read trapping: %s, want the call to trap", s.what, r)
	}
	k.same(t, s, k.fresh(t).handle(ctx, s.op, &call{input: s.in}), "on a new instance after a trap")
}
