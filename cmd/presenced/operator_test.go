package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

const alice = "sip:alice@example.com"

// An operator's day against the real daemon, through the admin API and
// presencectl: list, terminate with a reason, approve a pending watcher,
// reload a changed module under a live subscription, refuse a broken one.
func TestOperatingTheDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	dir := t.TempDir()
	bin := buildDaemon(t)
	ctl := buildCommand(t, "presencectl")
	echoWasm, shoutWasm := sdktest.Build(t, echoPkg), sdktest.Build(t, "github.com/presenced/presenced/internal/extension/testdata/shout")
	pa := sdktest.Build(t, paPkg)
	conf := sdktest.Build(t, "github.com/presenced/presenced/extensions/conference")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(dir, "presenced.toml")
	write := func(echoPath string) {
		os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
data_dir = %q
[[listen]]
transport = "udp"
address = %q
[admin]
listen = "127.0.0.1:0"
token = "s3cret"
[extension.echo]
path = %q
[extension.pa]
path = %q
[extension.pa.config]
policy = "confirm"
[extension.conference]
path = %q
`, filepath.Join(dir, "data"), addr, echoPath, pa, conf)), 0o644)
	}
	write(echoWasm)
	d := startDaemon(t, bin, "-config", cfg)
	d.serving(t)
	api := "http://" + d.admin(t)
	presencectl := func(args ...string) (string, int) {
		cmd := exec.Command(ctl, append([]string{"-addr", api, "-token", "s3cret"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return out.String(), code
	}

	// the token is required
	if res, err := http.Get(api + "/v1/subscriptions"); err != nil || res.StatusCode != 401 {
		t.Fatalf("no token: %v %v", res.StatusCode, err)
	}

	p, w := siptest.NewPeer(t, "UDP", addr), siptest.NewPeer(t, "UDP", addr)
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "hello"), 200)
	sub, r := w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	if n := w.Notify(); string(n.Body()) != "hello" {
		t.Fatalf("first NOTIFY:\n%s", n)
	}

	out, code := presencectl("subscriptions", "list", "--presentity", alice)
	if code != 0 || !strings.Contains(out, "sip:watcher@example.com") || !strings.Contains(out, alice) {
		t.Fatalf("subscriptions list (exit %d):\n%s", code, out)
	}
	out, code = presencectl("-o", "json", "subscriptions", "list")
	var subs []struct{ ID, Resource string }
	if code != 0 || json.Unmarshal([]byte(out), &subs) != nil || len(subs) != 1 {
		t.Fatalf("subscriptions list -o json (exit %d):\n%s", code, out)
	}

	// reload with a changed module: the same subscription, the new module's body
	write(shoutWasm)
	if out, code := presencectl("reload"); code != 0 {
		t.Fatalf("reload (exit %d):\n%s", code, out)
	}
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "after reload"), 200)
	if n := w.Notify(); string(n.Body()) != "AFTER RELOAD" || siptest.Header(n, "Call-ID") != sub.CallID || n.CSeq().SeqNo != 2 {
		t.Fatalf("NOTIFY after reload:\n%s", n)
	}
	// a broken module is refused and the running one stays
	broken := filepath.Join(dir, "broken.wasm")
	os.WriteFile(broken, []byte("not wasm"), 0o644)
	write(broken)
	if out, code := presencectl("reload"); code != 1 || !strings.Contains(out, "broken.wasm") {
		t.Fatalf("reload of a broken module (exit %d):\n%s", code, out)
	}
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "still here"), 200)
	if n := w.Notify(); string(n.Body()) != "STILL HERE" {
		t.Fatalf("NOTIFY after the refused reload:\n%s", n)
	}

	// terminate with a reason
	if out, code := presencectl("subscriptions", "terminate", subs[0].ID, "--reason", "deactivated"); code != 0 {
		t.Fatalf("terminate (exit %d):\n%s", code, out)
	}
	if n := w.Notify(); siptest.Header(n, "Subscription-State") != "terminated;reason=deactivated" {
		t.Fatalf("NOTIFY after terminate:\n%s", n)
	}
	if _, code := presencectl("subscriptions", "terminate", subs[0].ID); code != 1 {
		t.Fatalf("terminating a gone subscription exited %d, want 1", code)
	}

	// a pending watcher approved by the operator
	gina := "sip:gina@example.com"
	bob := siptest.NewPeer(t, "UDP", addr)
	_, r = bob.Subscribe("presence", gina)
	siptest.WantCode(t, r, 200)
	if n := bob.Notify(); !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "pending") {
		t.Fatalf("confirm policy:\n%s", n)
	}
	if out, code := presencectl("watchers", "approve", gina, "sip:watcher@example.com"); code != 0 {
		t.Fatalf("approve (exit %d):\n%s", code, out)
	}
	if n := bob.Notify(); !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "active") {
		t.Fatalf("after approval:\n%s", n)
	}

	// conference_reset: the module's command, by its short name
	room := "sip:room@example.com"
	doc := `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="` + room + `" state="full" version="1">` +
		`<users><user entity="sip:a@example.com"><display-text>A</display-text></user></users></conference-info>`
	siptest.WantCode(t, p.Publish("conference", room, "application/conference-info+xml", doc), 200)
	cw := siptest.NewPeer(t, "UDP", addr)
	_, r = cw.Subscribe("conference", room)
	siptest.WantCode(t, r, 200)
	if n := cw.Notify(); !strings.Contains(string(n.Body()), "sip:a@example.com") {
		t.Fatalf("conference NOTIFY:\n%s", n)
	}
	if out, code := presencectl("ext", "conference", "reset"); code != 0 {
		t.Fatalf("ext conference reset (exit %d):\n%s", code, out)
	}
	if n := cw.Notify(); strings.Contains(string(n.Body()), "sip:a@example.com") {
		t.Fatalf("NOTIFY after conference_reset still lists the user:\n%s", n)
	}

	// usage errors and an unreachable server have their own exit codes
	if _, code := presencectl("subscriptions", "frobnicate"); code != 2 {
		t.Fatalf("bad verb exited %d, want 2", code)
	}
	cmd := exec.Command(ctl, "-addr", "http://127.0.0.1:1", "subscriptions", "list")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("unreachable server exited %v, want 3", cmd.ProcessState.ExitCode())
	}
}
