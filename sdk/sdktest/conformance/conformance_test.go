package conformance_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/conformance"
)

// TestGuest runs the kit over its test module: conformant, it passes; with
// GUEST_BREAK set (by TestKitCatches, in a child process) it breaks a rule.
func TestGuest(t *testing.T) {
	broken, wasm := os.Getenv("GUEST_BREAK"), os.Getenv("GUEST_WASM")
	if wasm == "" {
		wasm = sdktest.Build(t, "./testdata/guest")
	}
	conformance.Run(t, wasm, conformance.Options{
		Config: map[string]string{"break": broken},
		Accept: map[string]conformance.Sample{"guest": {ContentType: "text/plain", Body: []byte("hello")}},
		Refuse: map[string]conformance.Sample{"guest": {ContentType: "text/plain", Body: []byte("bad")}},
	})
}

// TestKitCatches breaks one rule at a time and checks that the kit fails
// the check for it, in a child go test process, since a failing subtest
// would fail this test too.
func TestKitCatches(t *testing.T) {
	if os.Getenv("GUEST_BREAK") != "" {
		t.Skip("the child process")
	}
	wasm := sdktest.Build(t, "./testdata/guest")
	for broken, check := range map[string]string{
		"event-name":           "manifest",
		"refusal-fails":        "refusal",
		"render-changes-state": "script",
		"keeps-calls":          "same-output-any-instance",
		"reuse-by-uri":         "reuse",
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestGuest$", "-test.v")
		cmd.Env = append(os.Environ(), "GUEST_BREAK="+broken, "GUEST_WASM="+wasm)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--- FAIL: TestGuest/"+check+" ") {
			t.Errorf("break %s: want check %s to fail (err %v):\n%s", broken, check, err, out)
		}
	}
}
