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
//go:wasmexport presenced_abi_v1_1
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
	man, err := registered.Init(in.Name, in.Config)
	if err != nil {
		Log(LogError, "init: "+err.Error())
		return int32(abi.StatusInternal)
	}
	return writeOutput(man.Marshal())
}

//go:wasmexport presenced_handle
func exportHandle(op uint32, n uint32) int32 {
	var req abi.Request
	if err := req.Unmarshal(readInput(n)); err != nil {
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
	return writeOutput(res.Marshal())
}

func readInput(n uint32) []byte {
	if n == 0 {
		return nil
	}
	buf := make([]byte, n)
	got := inputRead(unsafe.Pointer(&buf[0]), n, 0)
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
