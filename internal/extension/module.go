// Package extension runs event-package modules: it compiles a .wasm file
// once with wazero, keeps a pool of interchangeable instances, and turns
// one abi.Request into one abi.Response under a memory cap and a deadline.
// It owns no SIP and no state: callers hand it the state blob each time.
package extension

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// growAfter is how long no instance may come back before a call waiting
// for one makes another (up to MaxInstances): far above a sound call
// (12 µs to 4 ms), and what a call to another presentity waits, besides
// the 4 ms of making an instance, while the module's instances loop.
const growAfter = 5 * time.Millisecond

// Spec says which module to load and under which limits.
type Spec struct {
	Name          string
	Path          string
	MemoryLimitMB int
	CallTimeout   time.Duration
	// Instances are made as soon as calls need them and kept; up to
	// MaxInstances (at least Instances) are made when calls hold every
	// instance for growAfter.
	Instances, MaxInstances int
	// Backoff is when calls stop after failures in a row; the zero value
	// never backs off.
	Backoff Backoff
	// Trusted compiles without wazero's termination checks: about 5x faster
	// for Go guests, but a runaway call can no longer be stopped.
	Trusted bool
	// Coalesce is, per event package of the module, the window within
	// which the host coalesces a watcher's NOTIFYs; a package the module
	// does not serve is refused at load.
	Coalesce map[string]time.Duration
	Config   map[string]string
	// CacheDir holds wazero's compilation cache; empty disables it.
	CacheDir string
	Logger   *slog.Logger
}

// MaxOutput caps what one call may write, so a hostile module cannot make
// the host buffer without bound.
const MaxOutput = 16 << 20

// Module is a loaded extension. It is safe for concurrent use.
type Module struct {
	spec     Spec
	sha256   string
	manifest abi.Manifest
	abi      string
	runtime  wazero.Runtime
	compiled wazero.CompiledModule
	pool     *pool
	overruns overruns
	breaker  breaker
	log      *slog.Logger

	calls, failures, nanos atomic.Int64
}

// Load reads, compiles and validates a module, starts one instance (which
// runs the module's init with its config) and returns it ready for calls.
func Load(ctx context.Context, spec Spec) (*Module, error) {
	m, err := load(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("load extension %q from %s: %w", spec.Name, spec.Path, err)
	}
	return m, nil
}

func load(ctx context.Context, spec Spec) (*Module, error) {
	if spec.Instances < 1 {
		spec.Instances = 1
	}
	spec.MaxInstances = max(spec.MaxInstances, spec.Instances)
	if b := &spec.Backoff; b.After > 0 {
		if b.Window <= 0 {
			b.Window = 10 * time.Second
		}
		if b.First <= 0 {
			b.First = time.Second
		}
		b.Max = max(b.Max, b.First)
	}
	if spec.MemoryLimitMB < 1 {
		spec.MemoryLimitMB = 64
	}
	if spec.CallTimeout <= 0 {
		spec.CallTimeout = time.Second
	}
	if spec.Logger == nil {
		spec.Logger = slog.Default()
	}
	code, err := os.ReadFile(spec.Path)
	if err != nil {
		return nil, err
	}
	m, err := start(ctx, spec, code, spec.CacheDir)
	var suspect *cacheSuspect
	if err == nil || spec.CacheDir == "" || !errors.As(err, &suspect) {
		return m, err
	}
	// wazero fails a compile whose cache entry it cannot read back (a
	// checksum mismatch after a disk error or a torn write) or cannot
	// write. Compiling once more without the cache tells that from a
	// module that does not compile, whose error is the one to report.
	// The cache only saves time: a module that compiles is not refused
	// for it.
	m, err2 := start(ctx, spec, code, "")
	if err2 != nil {
		return nil, err2
	}
	spec.Logger.Warn("compilation cache unreadable or unwritable: emptied, and the module compiled without it "+
		"(it is cached again at the next load)", "extension", spec.Name, "cache_dir", spec.CacheDir, "err", err)
	if err := emptyCache(spec.CacheDir); err != nil {
		spec.Logger.Warn("compilation cache not emptied", "cache_dir", spec.CacheDir, "err", err)
	}
	return m, nil
}

// start compiles code in a runtime of its own, with wazero's compilation
// cache in cacheDir unless it is "", and starts the module's first
// instance.
func start(ctx context.Context, spec Spec, code []byte, cacheDir string) (*Module, error) {
	sum := sha256.Sum256(code)
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(uint32(spec.MemoryLimitMB) * 16). // 64 KiB pages
		WithCloseOnContextDone(!spec.Trusted)
	if cacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
		if err != nil {
			return nil, &cacheSuspect{fmt.Errorf("compilation cache: %w", err)}
		}
		rc = rc.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	m := &Module{spec: spec, sha256: hex.EncodeToString(sum[:]), runtime: rt,
		log: spec.Logger.With("extension", spec.Name), breaker: breaker{cfg: spec.Backoff}}
	if err := m.setup(ctx, code); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return m, nil
}

// cacheSuspect is an error the compilation cache may have caused: making
// it, or wazero's CompileModule, which reads and writes it.
type cacheSuspect struct{ err error }

func (e *cacheSuspect) Error() string { return e.err.Error() }
func (e *cacheSuspect) Unwrap() error { return e.err }

// emptyCache removes what wazero keeps in dir, one wazero-VERSION-ARCH-OS
// directory per wazero version. Nothing else is touched: dir is the
// operator's choice and may hold other files.
func emptyCache(dir string) error {
	entries, err := filepath.Glob(filepath.Join(dir, "wazero-*"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		err = errors.Join(err, os.RemoveAll(e))
	}
	return err
}

func (m *Module) setup(ctx context.Context, code []byte) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.runtime); err != nil {
		return fmt.Errorf("wasi: %w", err)
	}
	if err := instantiateHost(ctx, m.runtime); err != nil {
		return fmt.Errorf("host functions: %w", err)
	}
	cctx := ctx
	if !m.spec.Trusted {
		// Only a checked call can be cut short, the one failure whose
		// error has no stack of its own.
		cctx = experimental.WithFunctionListenerFactory(ctx, recordFrames)
	}
	compiled, err := m.runtime.CompileModule(cctx, code)
	if err != nil {
		return &cacheSuspect{fmt.Errorf("compile: %w", err)}
	}
	m.compiled = compiled
	version, err := checkContract(compiled)
	if err != nil {
		return err
	}
	m.abi = version
	m.pool = newPool(m.spec.Instances, m.spec.MaxInstances, min(growAfter, m.spec.CallTimeout/2), m.newInstance)
	// One eager instance fails fast on a bad module or a bad config, and
	// gives us the manifest.
	in, err := m.pool.get(ctx, true)
	if err != nil {
		return err
	}
	m.pool.put(in)
	m.manifest = in.manifest
	if len(m.manifest.Packages) == 0 {
		return errors.New("the module serves no event package")
	}
	for event := range m.spec.Coalesce {
		if !slices.ContainsFunc(m.manifest.Packages, func(p abi.Package) bool { return p.Event == event }) {
			return fmt.Errorf("coalesce: %q is not an event package of this module", event)
		}
	}
	return nil
}

// checkContract refuses a module built against another ABI before any of
// its code runs.
func checkContract(c wazero.CompiledModule) (string, error) {
	exports := c.ExportedFunctions()
	var marker string
	for name := range exports {
		if strings.HasPrefix(name, "presenced_abi_v") {
			marker = name
		}
	}
	if marker == "" {
		return "", fmt.Errorf("not a presenced module: no %s export", abi.ExportMarker)
	}
	major, minor, ok := parseMarker(marker)
	if !ok {
		return "", fmt.Errorf("malformed ABI marker %q", marker)
	}
	if major != abi.Major || minor > abi.Minor {
		return "", fmt.Errorf("module needs presenced ABI v%d.%d, this host speaks v%d.%d", major, minor, abi.Major, abi.Minor)
	}
	for _, name := range []string{abi.ExportInitialize, abi.ExportInit, abi.ExportHandle} {
		if _, ok := exports[name]; !ok {
			return "", fmt.Errorf("missing export %q: a module is a WASI reactor with the exports of ABI.md §2 (build recipes for Go, C and Rust: ABI.md §8)", name)
		}
	}
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		if strings.HasPrefix(mod, "presenced_") && mod != abi.ImportModule {
			return "", fmt.Errorf("module imports from %q; this host provides %q", mod, abi.ImportModule)
		}
		if mod == abi.ImportModule && !hostFunctions[name] {
			return "", fmt.Errorf("module imports %s.%s, which this host (ABI v%d.%d) lacks", mod, name, abi.Major, abi.Minor)
		}
	}
	return fmt.Sprintf("%d.%d", major, minor), nil
}

func parseMarker(s string) (major, minor int, ok bool) {
	v, found := strings.CutPrefix(s, "presenced_abi_v")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(v, "_")
	if !found {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, err1 == nil && err2 == nil
}

// Name is the extension's name from the config.
func (m *Module) Name() string { return m.spec.Name }

// Coalesce is the NOTIFY coalescing window of one of the module's
// packages, 0 for none.
func (m *Module) Coalesce(event string) time.Duration { return m.spec.Coalesce[event] }

// Path is the .wasm file the module was loaded from.
func (m *Module) Path() string { return m.spec.Path }

// ABI is the ABI version the module was built for, e.g. "1.1".
func (m *Module) ABI() string { return m.abi }

// SHA256 is the hex digest of the loaded .wasm file.
func (m *Module) SHA256() string { return m.sha256 }

// Manifest is what the module said it serves when it was loaded.
func (m *Module) Manifest() abi.Manifest { return m.manifest }

// Stats are counters since load.
type Stats struct {
	Calls, Failures int64
	Total           time.Duration
	// Instances are live now, MaxInstances the most there may be.
	Instances, MaxInstances int
	// FailuresInARow count toward a back-off; BackoffUntil is when calls
	// will be let through again (zero: they are), and Refused the calls
	// refused with ErrBackoff, counted neither as calls nor as failures.
	FailuresInARow int
	BackoffUntil   time.Time
	Refused        int64
}

// Stats returns the module's counters.
func (m *Module) Stats() Stats {
	return Stats{Calls: m.calls.Load(), Failures: m.failures.Load(),
		Total: time.Duration(m.nanos.Load()), Instances: m.pool.live(), MaxInstances: m.spec.MaxInstances,
		FailuresInARow: int(m.breaker.streak.Load()), BackoffUntil: m.breaker.backingOff(), Refused: m.breaker.refused.Load()}
}

// Error is a module failure: a trap, a deadline, a negative status, bad
// output. The instance that failed has been discarded.
type Error struct {
	Extension string
	Op        abi.Op
	Err       error
	// RetryAfter is, with ErrBackoff, how long calls will be refused.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("extension %s: %s: %v (for %s)", e.Extension, e.Op, e.Err, e.RetryAfter.Round(time.Millisecond))
	}
	return fmt.Sprintf("extension %s: %s: %v", e.Extension, e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Handle runs one request on a pooled instance. A refusal by the module is
// a Response with a non-zero Code, not an error; an error is always *Error.
func (m *Module) Handle(ctx context.Context, req *abi.Request) (*abi.Response, error) {
	start := time.Now()
	if req.NowUnixNano == 0 {
		req.NowUnixNano = start.UnixNano()
	}
	probe, wait, ok := m.breaker.admit()
	if !ok {
		return nil, &Error{Extension: m.spec.Name, Op: req.Op, Err: ErrBackoff, RetryAfter: wait}
	}
	res, err := m.call(ctx, req)
	if errors.Is(err, ErrBusy) {
		// No call was made: overload, counted neither as a call nor as a
		// failure, and no instance is lost.
		m.breaker.done(probe, notRun)
		return nil, &Error{Extension: m.spec.Name, Op: req.Op, Err: err}
	}
	m.calls.Add(1)
	m.nanos.Add(int64(time.Since(start)))
	if err != nil {
		m.failures.Add(1)
		if period := m.breaker.done(probe, failed); period > 0 {
			m.log.Warn("extension keeps failing: calls refused (503) until one let through succeeds",
				"failures_in_a_row", m.breaker.streak.Load(), "probe_failed", probe, "for", period)
		}
		return nil, &Error{Extension: m.spec.Name, Op: req.Op, Err: err}
	}
	if m.breaker.done(probe, succeeded); probe {
		m.log.Info("extension back: a call succeeded after a back-off")
	}
	return res, nil
}

func (m *Module) call(ctx context.Context, req *abi.Request) (*abi.Response, error) {
	// A trusted module's call cannot be cut short (no termination checks),
	// so its deadline only bounds the wait for an instance: when one is
	// idle, no deadline (and no timer and context per call) is made.
	suspect := m.overruns.has(req.Event, req.Resource)
	in := m.pool.idleNow(suspect)
	if in == nil || !m.spec.Trusted {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.spec.CallTimeout)
		defer cancel()
	}
	if in == nil {
		var err error
		if in, err = m.pool.get(ctx, suspect); err != nil {
			return nil, err
		}
	}
	out, err := in.handle(ctx, req)
	if err != nil && ctx.Err() != nil {
		m.overruns.add(req.Event, req.Resource)
	}
	res := &abi.Response{}
	if err == nil {
		// Garbage for output is a failure like a trap: the instance that
		// wrote it goes too.
		if uerr := res.Unmarshal(out); uerr != nil {
			err = fmt.Errorf("malformed response: %w", uerr)
		}
	}
	if err != nil {
		// After a guest panic wazero keeps the instance open, and the next
		// call may even succeed, but the guest's runtime is in an unknown
		// state: drop it.
		m.log.Warn("extension call failed, instance discarded", "op", req.Op.String(),
			"resource", req.Resource, "err", err, "stderr", in.stderr.String())
		m.pool.discard(in)
		return nil, err
	}
	m.overruns.clear(req.Event, req.Resource)
	m.pool.put(in)
	return res, nil
}

// Drain stops handing out instances, waits (until ctx ends) for the calls
// in flight to return, then closes the module: what a hot reload does to
// the module it replaces.
func (m *Module) Drain(ctx context.Context) error {
	m.pool.close()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for m.pool.live() > 0 {
		select {
		case <-ctx.Done():
			m.runtime.Close(context.Background())
			return fmt.Errorf("extension %s: %d calls still running: %w", m.spec.Name, m.pool.live(), ctx.Err())
		case <-t.C:
		}
	}
	return m.runtime.Close(context.Background())
}

// Close stops every instance and frees the runtime.
func (m *Module) Close(ctx context.Context) error {
	m.pool.close()
	return m.runtime.Close(ctx)
}

func (m *Module) newInstance(ctx context.Context) (*instance, error) {
	in := &instance{stderr: &tailBuffer{max: 4096}}
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous: many instances of one module per runtime
		WithStartFunctions(abi.ExportInitialize).
		// Go guests need real clocks: on wazero's default fake clock a Go
		// guest's linear memory grew to 100 MiB over 10,000 calls, against
		// 7.9 MiB on real ones.
		WithSysNanotime().WithSysWalltime().
		WithRandSource(rand.Reader).
		WithStderr(in.stderr).WithStdout(in.stderr)
	if m.spec.Trusted {
		cfg = cfg.WithSysNanosleep()
	} else {
		// A sleeping guest sits in the host's poll_oneoff, where wazero's
		// deadline check cannot reach it: wake it when the call ends.
		cfg = cfg.WithNanosleep(in.nanosleep)
		in.done = ctx.Done()
	}
	mod, err := m.runtime.InstantiateModule(experimental.WithMemoryAllocator(ctx, linearMemory), m.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	in.mod = mod
	in.init = mod.ExportedFunction(abi.ExportInit)
	in.handleFn = mod.ExportedFunction(abi.ExportHandle)
	in.log = m.log
	init := abi.InitRequest{Name: m.spec.Name, Config: m.spec.Config}
	out, err := in.invoke(ctx, in.init, init.Marshal(), 0)
	if err != nil {
		mod.Close(ctx)
		return nil, fmt.Errorf("init: %w (stderr: %s)", err, in.stderr.String())
	}
	if err := in.manifest.Unmarshal(out); err != nil {
		mod.Close(ctx)
		return nil, fmt.Errorf("init: malformed manifest: %w", err)
	}
	return in, nil
}
