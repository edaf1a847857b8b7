package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/presenced/presenced/sdk/sdktest"
)

// buildDaemon builds this command once per test binary.
func buildDaemon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "presenced")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "presenced.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The real daemon, started from a TOML file with the real modules,
// answers SIP on a socket and stops cleanly on SIGTERM.
func TestDaemonServesAndStops(t *testing.T) {
	bin := buildDaemon(t)
	pa := sdktest.Build(t, "github.com/presenced/presenced/extensions/pa")
	conf := sdktest.Build(t, "github.com/presenced/presenced/extensions/conference")
	cfg := writeConfig(t, fmt.Sprintf(`
[server]
data_dir = %q
[admin]
listen = ""
[[listen]]
transport = "udp"
address = "127.0.0.1:0"
[extension.pa]
path = %q
[extension.conference]
path = %q
`, t.TempDir(), pa, conf))
	cmd := exec.Command(bin, "-config", cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`udp:(127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil && strings.Contains(sc.Text(), "serving") {
				addr <- m[1]
			}
		}
	}()
	var server string
	select {
	case server = <-addr:
	case <-time.After(60 * time.Second):
		t.Fatal("daemon did not say it was serving")
	}

	c, err := net.Dial("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "OPTIONS sip:presenced@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-opt1\r\n"+
		"From: <sip:t@example.com>;tag=1\r\nTo: <sip:presenced@example.com>\r\nCall-ID: opt1\r\nCSeq: 1 OPTIONS\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", server, c.LocalAddr())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	res := string(buf[:n])
	if !strings.HasPrefix(res, "SIP/2.0 200") || !strings.Contains(res, "Allow-Events: conference, presence") {
		t.Fatalf("OPTIONS answer:\n%s", res)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
}

// A bad config stops the daemon before it serves, naming file, line, key.
func TestDaemonRefusesABadConfig(t *testing.T) {
	bin := buildDaemon(t)
	cfg := writeConfig(t, "[subscription]\nmin_expires = 60\nmax_expires = 10\n")
	out, err := exec.Command(bin, "-config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want status 2\n%s", err, out)
	}
	want := cfg + `:3: key "subscription.max_expires"`
	if !strings.Contains(string(out), want) {
		t.Fatalf("output %q does not name %q", out, want)
	}

	cfg = writeConfig(t, "[extension.pa]\npath = \"missing.wasm\"\n")
	out, err = exec.Command(bin, "-check-config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing.wasm") {
		t.Fatalf("a missing module passed -check-config: %v\n%s", err, out)
	}
}
