package conformance

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// The kit drives a module through wazero itself rather than through the
// host, whose Handle turns every negative status into one error and never
// sends undecodable input: here each export is called with bytes of the
// kit's choosing, its status read as returned, and the host functions can
// cap the output or trap on purpose. The host itself is checked once, by
// loading the module into it (the "host" check).

// guest is a compiled module the kit makes instances of.
type guest struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	timeout  time.Duration
}

// call is one export call as the host functions see it.
type call struct {
	input     []byte
	output    []byte
	outputCap int  // output_write refuses (-4) past this many bytes
	trap      bool // input_read traps instead of answering
	refused   bool // output_write answered -4
}

type callKey struct{}

// result is what one export call gave: the status it returned, or the
// trap (or deadline) that ended it.
type result struct {
	status abi.Status
	output []byte
	trap   error
	call   *call
}

func (r result) String() string {
	if r.trap != nil {
		return "trap: " + r.trap.Error()
	}
	return fmt.Sprintf("status %d (%s), %d bytes of output", int32(r.status), r.status, len(r.output))
}

func compile(ctx context.Context, path string, timeout time.Duration) (*guest, []byte, error) {
	code, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	rc := wazero.NewRuntimeConfig().WithMemoryLimitPages(64 * 16).WithCloseOnContextDone(true)
	if cache, err := wazero.NewCompilationCacheWithDir(cacheDir()); err == nil {
		rc = rc.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, nil, err
	}
	i32 := api.ValueTypeI32
	_, err = rt.NewHostModuleBuilder(abi.ImportModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(inputRead), []api.ValueType{i32, i32, i32}, []api.ValueType{i32}).Export(abi.ImportInputRead).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(outputWrite), []api.ValueType{i32, i32}, []api.ValueType{i32}).Export(abi.ImportOutputWrite).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostLog), []api.ValueType{i32, i32, i32}, []api.ValueType{i32}).Export(abi.ImportLog).
		Instantiate(ctx)
	if err != nil {
		rt.Close(ctx)
		return nil, nil, err
	}
	compiled, err := rt.CompileModule(ctx, code)
	if err != nil {
		rt.Close(ctx)
		return nil, nil, fmt.Errorf("compile: %w", err)
	}
	return &guest{rt: rt, compiled: compiled, timeout: timeout}, code, nil
}

// cacheDir is the compilation cache sdktest's loads share, so that a
// module is compiled once per machine rather than once per check.
func cacheDir() string { return filepath.Join(os.TempDir(), "presenced-wasm-cache") }

// instance is one instance of the guest, _initialize run.
type instance struct {
	g      *guest
	mod    api.Module
	stderr *tail
}

func (g *guest) instance(ctx context.Context) (*instance, error) {
	in := &instance{g: g, stderr: &tail{}}
	cfg := wazero.NewModuleConfig().WithName("").
		WithStartFunctions(abi.ExportInitialize).
		WithSysNanotime().WithSysWalltime().WithRandSource(rand.Reader).
		WithStderr(in.stderr).WithStdout(in.stderr)
	mod, err := g.rt.InstantiateModule(ctx, g.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("instantiate (runs _initialize): %w", err)
	}
	in.mod = mod
	return in, nil
}

// init calls presenced_init with input.
func (in *instance) init(ctx context.Context, input []byte) result {
	return in.invoke(ctx, abi.ExportInit, &call{input: input, outputCap: maxOutput}, uint64(len(input)))
}

// handle calls presenced_handle(op, len(c.input)).
func (in *instance) handle(ctx context.Context, op uint32, c *call) result {
	if c.outputCap == 0 {
		c.outputCap = maxOutput
	}
	return in.invoke(ctx, abi.ExportHandle, c, uint64(op), uint64(len(c.input)))
}

func (in *instance) invoke(ctx context.Context, name string, c *call, params ...uint64) result {
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, callKey{}, c), in.g.timeout)
	defer cancel()
	res, err := in.mod.ExportedFunction(name).Call(ctx, params...)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("ran past the kit's deadline of %v: %w", in.g.timeout, err)
		}
		if s := in.stderr.String(); s != "" {
			err = fmt.Errorf("%w (stderr: %s)", err, s)
		}
		return result{trap: err, call: c}
	}
	return result{status: abi.Status(int32(uint32(res[0]))), output: c.output, call: c}
}

func (in *instance) close(ctx context.Context) { in.mod.Close(ctx) }

// maxOutput is the host's cap on one call's output (ABI.md §7).
const maxOutput = 16 << 20

func current(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

func status(s abi.Status) uint64 { return uint64(uint32(int32(s))) }

func inputRead(ctx context.Context, mod api.Module, stack []uint64) {
	c := current(ctx)
	dst, n, off := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
	if c.trap {
		panic("trap the kit injected in input_read")
	}
	if int(off) >= len(c.input) {
		stack[0] = 0
		return
	}
	chunk := c.input[off:]
	if uint32(len(chunk)) > n {
		chunk = chunk[:n]
	}
	if !mod.Memory().Write(dst, chunk) {
		stack[0] = status(abi.StatusBadPointer)
		return
	}
	stack[0] = uint64(len(chunk))
}

func outputWrite(ctx context.Context, mod api.Module, stack []uint64) {
	c := current(ctx)
	src, n := uint32(stack[0]), uint32(stack[1])
	if len(c.output)+int(n) > c.outputCap {
		c.refused = true
		stack[0] = status(abi.StatusTooLarge)
		return
	}
	b, ok := mod.Memory().Read(src, n)
	if !ok {
		stack[0] = status(abi.StatusBadPointer)
		return
	}
	c.output = append(c.output, b...)
	stack[0] = status(abi.StatusOK)
}

func hostLog(_ context.Context, mod api.Module, stack []uint64) {
	p, n := uint32(stack[1]), uint32(stack[2])
	if uint64(p)+uint64(n) > uint64(mod.Memory().Size()) {
		stack[0] = status(abi.StatusBadPointer)
		return
	}
	stack[0] = status(abi.StatusOK)
}

// tail keeps the last 4 KiB a guest wrote to stdout and stderr, for the
// message of a check that failed.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }
