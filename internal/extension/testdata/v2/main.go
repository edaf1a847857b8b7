// Command v2 is a test module built for an ABI this host does not speak:
// the host must refuse it before running any of its code.
package main

//go:wasmexport presenced_abi_v2_0
func marker() {}

//go:wasmexport presenced_init
func initExport(n uint32) int32 { return 0 }

//go:wasmexport presenced_handle
func handle(op, n uint32) int32 { return 0 }

func main() {}
