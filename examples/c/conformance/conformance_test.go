// Package conformance runs the conformance kit over the C example module,
// ../note.c, built by ../Makefile. It is a folder of its own because the
// go command refuses C files in a Go package that does not use cgo.
package conformance

import (
	"os/exec"
	"testing"

	"github.com/presenced/presenced/sdk/sdktest/conformance"
)

func TestConformance(t *testing.T) {
	// make rebuilds note.wasm only when note.c changed; without clang
	// and wasi-libc it fails, and says so, rather than skipping.
	if out, err := exec.Command("make", "-s", "-C", "..", "note.wasm").CombinedOutput(); err != nil {
		t.Fatalf("make note.wasm (needs clang, lld, wasi-libc and libclang-rt-14-dev-wasm32, see ../README.md): %v\n%s", err, out)
	}
	long := make([]byte, 1025)
	for i := range long {
		long[i] = 'a'
	}
	conformance.Run(t, "../note.wasm", conformance.Options{
		Accept: map[string]conformance.Sample{"note": {ContentType: "text/plain", Body: []byte("At my desk ☕")}},
		Refuse: map[string]conformance.Sample{"note": {ContentType: "text/plain", Body: long}},
	})
}
