//go:build wasip1

package sdk

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/presenced/presenced/abi"
)

//go:wasmimport presenced_v1 input_read
func inputRead(dst unsafe.Pointer, n uint32, offset uint32) int32

//go:wasmimport presenced_v1 output_write
func outputWrite(src unsafe.Pointer, n uint32) int32

//go:wasmimport presenced_v1 log
func hostLog(level uint32, p unsafe.Pointer, n uint32) int32

// The marker export: its name is the ABI version this SDK speaks. It must
// match abi.ExportMarker.
//
//go:wasmexport presenced_abi_v1_2
func abiMarker() {}

//go:wasmexport presenced_init
func exportInit(n uint32) int32 {
	if registered == nil {
		Log(LogError, "sdk: no module registered; call sdk.Register from init()")
		return int32(abi.StatusInternal)
	}
	var in abi.InitRequest
	if err := in.Unmarshal(readInput(n)); err != nil {
		Log(LogError, "init: "+err.Error())
		return int32(abi.StatusBadInput)
	}
	man, err := initialize(registered, in.Name, in.Config)
	if err != nil {
		Log(LogError, "init: "+err.Error())
		return int32(abi.StatusInternal)
	}
	return writeOutput(man.Marshal())
}

// in and out are the buffers every presenced_handle call of this instance
// reads its request into and encodes its response in, and req the request
// it decodes: an allocation in a Go guest is what a call mostly costs
// (sdk/RATIONALE.md). The request and its byte fields (aliasing in) last
// until the call returns: a module keeps nothing between calls. A buffer
// grown past keepBuffer is let go after its call, so one large document
// does not hold memory for the life of the instance.
var (
	in, out []byte
	req     abi.Request
)

const keepBuffer = 64 << 10

//go:wasmexport presenced_handle
func exportHandle(op uint32, n uint32) int32 {
	defer func() {
		req = abi.Request{} // holds nothing of this call past it
		if cap(in) > keepBuffer {
			in = nil
		}
		if cap(out) > keepBuffer {
			out = nil
		}
	}()
	if uint32(cap(in)) < n {
		in = make([]byte, n)
	}
	if err := req.Unmarshal(readInputInto(in[:n])); err != nil {
		Log(LogError, "handle: "+err.Error())
		return int32(abi.StatusBadInput)
	}
	if uint32(req.Op) != op {
		Log(LogError, fmt.Sprintf("handle: op %d in the call, %d in the request", op, req.Op))
		return int32(abi.StatusBadInput)
	}
	res, err := Dispatch(registered, &req)
	if errors.Is(err, errUnsupported) {
		return int32(abi.StatusUnsupported)
	}
	if err != nil {
		Log(LogError, fmt.Sprintf("%s %s: %v", req.Op, req.Resource, err))
		return int32(abi.StatusInternal)
	}
	out = res.MarshalAppend(out[:0])
	return writeOutput(out)
}

func readInput(n uint32) []byte { return readInputInto(make([]byte, n)) }

// readInputInto reads the call's input into buf, as long as the input.
func readInputInto(buf []byte) []byte {
	if len(buf) == 0 {
		return nil
	}
	got := inputRead(unsafe.Pointer(&buf[0]), uint32(len(buf)), 0)
	if got < 0 {
		return nil
	}
	return buf[:got]
}

func writeOutput(b []byte) int32 {
	if len(b) == 0 {
		return int32(abi.StatusOK)
	}
	return outputWrite(unsafe.Pointer(&b[0]), uint32(len(b)))
}

// Log writes one line to the host's log, tagged with the extension's name.
func Log(level LogLevel, msg string) {
	if msg == "" {
		return
	}
	b := []byte(msg)
	hostLog(uint32(level), unsafe.Pointer(&b[0]), uint32(len(b)))
}
