package extension

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// instance is one module instance; it serves one call at a time.
type instance struct {
	mod      api.Module
	init     api.Function
	handleFn api.Function
	manifest abi.Manifest
	log      *slog.Logger
	stderr   *tailBuffer
	// surplus: made above the pool's min, when its instances were held
	// (pool.get), at made, and dropped when it comes back to find one
	// idle, surplusLinger after made at the earliest, or once idle (the
	// time it last went idle) is surplusLinger ago (pool.reap).
	surplus bool
	made    time.Time
	idle    time.Time
	// done ends the current call's sleeps (see nanosleep, which trusted
	// modules do not use). Only the goroutine running the call touches it.
	done <-chan struct{}
	// request, call and stack are reused by each call (one at a time) so
	// that a call allocates only what its answer keeps: the encoding of a
	// request (100 KB for a change with 1,000 watchers), the state the
	// host functions see, and the parameters of the export (RATIONALE.md).
	request []byte
	call    callState
	stack   [2]uint64
	// callCtx is the last caller's context with &call as callKey's value,
	// made again only when the caller's context is another: a trusted
	// module's calls all run in the server's (no deadline), and so share
	// one.
	parent, callCtx context.Context
}

// keepRequest bounds the request buffer an instance keeps between calls:
// a fan-out's request to a crowd of 1,000 watchers is about 100 KB, and a
// larger one is let go after its call rather than held for the life of the
// instance.
const keepRequest = 1 << 20

// nanosleep is the guest's clock sleep (WASI poll_oneoff): real time, cut
// short when the call's context ends so that a sleeping guest cannot hold a
// call past its deadline.
func (in *instance) nanosleep(ns int64) {
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-in.done:
	}
}

// callState is what the host functions see of the running call. It travels
// in the call's context because wazero hands host functions that context.
type callState struct {
	input  []byte
	output []byte
	failed error
	log    *slog.Logger
	// frames are the guest's functions (those frameRecorder watches) on
	// the stack when the call was cut short, innermost first.
	frames []string
}

type callKey struct{}

// handle encodes req into the instance's request buffer and calls the
// module's handler with it.
func (in *instance) handle(ctx context.Context, req *abi.Request) ([]byte, error) {
	in.request = req.MarshalAppend(in.request[:0])
	out, err := in.invoke(ctx, in.handleFn, in.request, uint64(req.Op))
	if cap(in.request) > keepRequest {
		in.request = nil
	}
	return out, err
}

// invoke calls fn(op?, len(input)); init takes only the length. The
// output it returns is the caller's: the next call starts a new one.
func (in *instance) invoke(ctx context.Context, fn api.Function, input []byte, op uint64) ([]byte, error) {
	cs := &in.call
	*cs = callState{input: input, log: in.log}
	// The call state outlives the call: it must not hold a request buffer
	// let go (keepRequest) nor the caller's output.
	defer func() { cs.input, cs.output = nil, nil }()
	if ctx != in.parent {
		in.parent, in.callCtx = ctx, context.WithValue(ctx, callKey{}, cs)
	}
	ctx = in.callCtx
	in.done = ctx.Done()
	stack := in.stack[:1]
	stack[0] = uint64(len(input))
	if fn == in.handleFn {
		stack = in.stack[:2]
		stack[0], stack[1] = op, uint64(len(input))
	}
	if err := fn.CallWithStack(ctx, stack); err != nil {
		if ctx.Err() != nil {
			// wazero's error for a call cut short (sys.ExitError) carries
			// no stack, unlike a trap's: say where the guest was from the
			// frames frameRecorder saw unwound.
			if len(cs.frames) > 0 {
				return nil, fmt.Errorf("deadline exceeded: %w\nwasm stack trace (the module's own functions):\n\t%s",
					err, strings.Join(cs.frames, "\n\t"))
			}
			return nil, fmt.Errorf("deadline exceeded: %w", err)
		}
		return nil, err
	}
	if cs.failed != nil {
		return nil, cs.failed
	}
	if st := abi.Status(int32(uint32(stack[0]))); st < 0 {
		return nil, fmt.Errorf("module returned %s", st)
	}
	return cs.output, nil
}

// frameRecorder is a wazero function listener that does nothing while a
// call runs and, when a call ends in a panic (a trap, or the module closed
// at the deadline), records each unwound frame it listens to. It listens
// only to the exports and to a Go guest's package main: every listened
// function costs two exits to Go per call, and on every function pa's XML
// publish took 60 % longer with termination checks on (222 -> 359 µs).
type frameRecorder struct{}

func (frameRecorder) Before(context.Context, api.Module, api.FunctionDefinition, []uint64, experimental.StackIterator) {
}

func (frameRecorder) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (frameRecorder) Abort(ctx context.Context, _ api.Module, def api.FunctionDefinition, _ error) {
	if cs := current(ctx); cs != nil {
		cs.frames = append(cs.frames, def.Name())
	}
}

// recordFrames attaches frameRecorder to the functions a deadline's log
// line names: a Go guest's own (package main) and the exports.
var recordFrames = experimental.FunctionListenerFactoryFunc(func(def api.FunctionDefinition) experimental.FunctionListener {
	if strings.HasPrefix(def.Name(), "main.") || len(def.ExportNames()) > 0 {
		return frameRecorder{}
	}
	return nil
})

// hostFunctions are the names this host provides in abi.ImportModule.
var hostFunctions = map[string]bool{
	abi.ImportInputRead:   true,
	abi.ImportOutputWrite: true,
	abi.ImportLog:         true,
}

var i32 = api.ValueTypeI32

func instantiateHost(ctx context.Context, rt wazero.Runtime) error {
	_, err := rt.NewHostModuleBuilder(abi.ImportModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(inputRead),
		[]api.ValueType{i32, i32, i32}, []api.ValueType{i32}).Export(abi.ImportInputRead).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(outputWrite),
		[]api.ValueType{i32, i32}, []api.ValueType{i32}).Export(abi.ImportOutputWrite).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostLog),
		[]api.ValueType{i32, i32, i32}, []api.ValueType{i32}).Export(abi.ImportLog).
		Instantiate(ctx)
	return err
}

func status(s abi.Status) uint64 { return uint64(uint32(int32(s))) }

func current(ctx context.Context) *callState {
	cs, _ := ctx.Value(callKey{}).(*callState)
	return cs
}

// inputRead(dst, len, offset) -> n
func inputRead(ctx context.Context, mod api.Module, stack []uint64) {
	cs := current(ctx)
	dst, n, off := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
	if cs == nil {
		stack[0] = status(abi.StatusInternal)
		return
	}
	if int(off) >= len(cs.input) {
		stack[0] = 0
		return
	}
	chunk := cs.input[off:]
	if uint32(len(chunk)) > n {
		chunk = chunk[:n]
	}
	if !mod.Memory().Write(dst, chunk) {
		cs.failed = errors.New("input_read: destination out of guest memory")
		stack[0] = status(abi.StatusBadPointer)
		return
	}
	stack[0] = uint64(len(chunk))
}

// outputWrite(src, len) -> status
func outputWrite(ctx context.Context, mod api.Module, stack []uint64) {
	cs := current(ctx)
	src, n := uint32(stack[0]), uint32(stack[1])
	if cs == nil {
		stack[0] = status(abi.StatusInternal)
		return
	}
	if len(cs.output)+int(n) > MaxOutput {
		cs.failed = fmt.Errorf("output_write: output over %d bytes", MaxOutput)
		stack[0] = status(abi.StatusTooLarge)
		return
	}
	b, ok := mod.Memory().Read(src, n)
	if !ok {
		cs.failed = errors.New("output_write: source out of guest memory")
		stack[0] = status(abi.StatusBadPointer)
		return
	}
	cs.output = append(cs.output, b...)
	stack[0] = status(abi.StatusOK)
}

// maxLogLine keeps one module log line from flooding the host's log.
const maxLogLine = 2048

// hostLog(level, ptr, len) -> status
func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	cs := current(ctx)
	level, p, n := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
	if cs == nil {
		stack[0] = status(abi.StatusBadPointer)
		return
	}
	// The whole line must lie in guest memory (ABI: -5, and the call
	// fails), even though only its first maxLogLine bytes are logged.
	if uint64(p)+uint64(n) > uint64(mod.Memory().Size()) {
		cs.failed = errors.New("log: line out of guest memory")
		stack[0] = status(abi.StatusBadPointer)
		return
	}
	b, _ := mod.Memory().Read(p, min(n, maxLogLine))
	cs.log.Log(ctx, slog.Level((int(min(level, abi.LogError))-1)*4), string(b))
	stack[0] = status(abi.StatusOK)
}

// tailBuffer keeps the last bytes a guest wrote to stdout/stderr, so a
// panic message can go into the log line of the failed call.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
