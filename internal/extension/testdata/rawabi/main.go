// Command rawabi is a test module that speaks the ABI by hand, without the
// SDK, so it can break the rules the SDK keeps: it writes garbage as its
// output, hands the host functions pointers and lengths outside its linear
// memory, and streams a body far past the output cap. It serves the event
// package "raw" and switches on the published body:
//
//	"garbage"  writes bytes that are no Response and returns 0
//	"badin"    input_read to dst 0xFFFFFFF0, ignores the -5, returns 0
//	"badout"   output_write from src 0xFFFFFFF0, ignores the -5, returns 0
//	"badlog"   log with a pointer past the end of memory, returns 0
//	"hugelog"  log from a valid pointer with len 0xFFFFFFFF, returns 0
//	"huge"     writes a 100 MiB body in 1 MiB chunks, ignoring refusals
//	"stream=N" the same with N chunks
//	"hugeone"  one output_write of 100 MB from a 1 KiB buffer
//	"neg"      returns the undefined status -77
//	"id"       answers with this instance's random id, as state
//	anything else is stored, like echo.
//
// Every case that breaks a rule returns 0 (success) as if nothing
// happened: the host must fail the call on its own knowledge.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"unsafe"

	"github.com/presenced/presenced/abi"
)

//go:wasmimport presenced_v1 input_read
func inputRead(dst uint32, n uint32, offset uint32) int32

//go:wasmimport presenced_v1 output_write
func outputWrite(src uint32, n uint32) int32

//go:wasmimport presenced_v1 log
func hostLog(level uint32, p uint32, n uint32) int32

//go:wasmexport presenced_abi_v1_1
func abiMarker() {}

const far = 0xFFFFFFF0 // past any linear memory a 32-bit module can have

var id = func() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}()

// keep holds buffers whose addresses were given to the host, so they stay
// put and alive while the host reads them.
var keep [][]byte

func ptr(b []byte) uint32 {
	keep = append(keep[:0], b)
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func read(n uint32) []byte {
	if n == 0 {
		return nil
	}
	buf := make([]byte, n)
	got := inputRead(ptr(buf), n, 0)
	if got < 0 {
		return nil
	}
	return buf[:got]
}

func write(b []byte) int32 {
	if len(b) == 0 {
		return 0
	}
	return outputWrite(ptr(b), uint32(len(b)))
}

// stream writes n MiB of output in 1 MiB chunks, ignoring refusals.
func stream(n int) {
	chunk := make([]byte, 1<<20)
	for range n {
		write(chunk)
	}
}

//go:wasmexport presenced_init
func exportInit(n uint32) int32 {
	read(n)
	man := abi.Manifest{Packages: []abi.Package{{Event: "raw", Accept: []string{"text/plain"}, DefaultExpires: 60}}}
	return write(man.Marshal())
}

//go:wasmexport presenced_handle
func exportHandle(op uint32, n uint32) int32 {
	var req abi.Request
	if err := req.Unmarshal(read(n)); err != nil {
		return int32(abi.StatusBadInput)
	}
	var body string
	if req.Publication != nil {
		body = string(req.Publication.Body)
	}
	switch body {
	case "garbage":
		// field 1 (code) as a varint that overflows 64 bits
		write([]byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		return 0
	case "badin":
		inputRead(far, 16, 0)
		return 0
	case "badout":
		outputWrite(far, 64)
		return 0
	case "badlog":
		hostLog(abi.LogInfo, far, 16)
		return 0
	case "hugelog":
		msg := []byte("a log line that claims to be 4 GiB long")
		hostLog(abi.LogInfo, ptr(msg), 0xFFFFFFFF)
		return 0
	case "huge":
		stream(100)
		return 0
	case "hugeone":
		buf := make([]byte, 1024)
		outputWrite(ptr(buf), 100<<20)
		return 0
	case "neg":
		return -77
	case "id":
		body = id
	default:
		if v, ok := strings.CutPrefix(body, "stream="); ok {
			n, _ := strconv.Atoi(v)
			stream(n)
			return 0
		}
	}
	res := abi.Response{State: []byte(body), StateChanged: true}
	for _, w := range req.Watchers {
		res.Notifications = append(res.Notifications, abi.Notification{WatcherID: w.ID, ContentType: "text/plain", Body: []byte(body)})
	}
	return write(res.Marshal())
}

func main() {}
