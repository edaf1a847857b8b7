// Command wasmrun runs a Go test binary built for wasm under wazero, as a
// module's code runs in presenced, so that benchmarks measure it where it
// costs: in a Go guest an allocation or a byte loop costs several times
// what it does natively, and SHA-256 thirty times. The presenced_v1
// imports the SDK links in are stubs (input empty, output and log
// dropped); the guest sees the host's files from the same working
// directory, as a native test does, for its testdata.
//
//	GOOS=wasip1 GOARCH=wasm go test -c -o /tmp/xmldoc.wasm ./sdk/xmldoc
//	go run ./sdk/sdktest/wasmrun /tmp/xmldoc.wasm -test.run '^$' -test.bench Read -test.benchmem
//
// With WASMRUN_CLOCK=thread (Linux) the guest's monotonic clock is the CPU
// time of the thread running it, so a benchmark's ns/op is the CPU the
// guest spent, which the other processes of a shared machine disturb far
// less than the wall clock; a guest that sleeps or waits must not use it.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/presenced/presenced/abi"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wasmrun file.wasm [-test.flags...]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], os.Args[2:]))
}

// threadClock is the calling thread's CPU time in nanoseconds, where the
// OS gives it (threadclock_linux.go).
var threadClock func() int64

func run(path string, args []string) int {
	ctx := context.Background()
	bin, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	_, err = r.NewHostModuleBuilder(abi.ImportModule).
		NewFunctionBuilder().WithFunc(func(uint32, uint32, uint32) int32 { return 0 }).Export("input_read").
		NewFunctionBuilder().WithFunc(func(uint32, uint32) int32 { return 0 }).Export("output_write").
		NewFunctionBuilder().WithFunc(func(uint32, uint32, uint32) int32 { return 0 }).Export("log").
		Instantiate(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	dir, _ := os.Getwd()
	cfg := wazero.NewModuleConfig().WithArgs(append([]string{path}, args...)...).
		WithStdout(os.Stdout).WithStderr(os.Stderr).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().
		WithFSConfig(wazero.NewFSConfig().WithDirMount("/", "/"))
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "PWD" {
			cfg = cfg.WithEnv(k, v)
		}
	}
	cfg = cfg.WithEnv("PWD", dir) // the host's file system is the guest's, as for a native test
	if os.Getenv("WASMRUN_CLOCK") == "thread" {
		if threadClock == nil {
			fmt.Fprintln(os.Stderr, "WASMRUN_CLOCK=thread: no thread CPU clock on this OS")
			return 2
		}
		// The guest runs on this goroutine: locked, its thread's clock
		// counts the guest alone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cfg = cfg.WithNanotime(threadClock, 1)
	}
	_, err = r.InstantiateWithConfig(ctx, bin, cfg)
	if exit, ok := err.(*sys.ExitError); ok {
		return int(exit.ExitCode())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
