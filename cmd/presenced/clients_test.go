package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/logtest"
	"github.com/presenced/presenced/sdk/sdktest"
)

// The tests with real softphones (baresip_test.go, linphone_test.go) run
// each client as its own process, driven headless through its command
// interface, against the real daemon built by this package's harness.
// They share what is here: the tool check, the daemon with its listeners
// and the admin API that shows what the server holds.

// adminToken guards the daemon's admin API in these tests, as an operator
// would set it.
const adminToken = "phones"

// inCI is true in the CI run (.ci/run), where every tool a test needs is
// installed: a missing one is a broken CI, not a reason to skip.
var inCI = os.Getenv("CI") == "true"

// needProgram returns the path of a client's program; without it the test
// fails in CI and is skipped elsewhere, naming the Debian package.
func needProgram(t *testing.T, name, pkg string) string {
	t.Helper()
	return needTool(t, name, ".ci/run must install the Debian package "+pkg, func() (string, error) { return exec.LookPath(name) })
}

// sipPort is one port the daemon serves UDP and TCP on in a client test.
type sipPort struct {
	name string // "5060" or "other", in the subtest's name
	port int
	// why the port cannot be used here ("" if it can): 5060 is often
	// taken on a developer's machine, by a softphone or a PBX.
	unusable string
}

// freeSIPPort is a port free now for both UDP and TCP on 127.0.0.1.
func freeSIPPort(t *testing.T) int {
	return portBelowEphemeral(t, func(addr string) bool { return portBusy(addr) == "" })
}

// freeTCPPort is a TCP port free now, for a client's command socket.
func freeTCPPort(t *testing.T) int {
	return portBelowEphemeral(t, func(addr string) bool {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
		}
		return err == nil
	})
}

// portBelowEphemeral is a port on 127.0.0.1 that free says is free now,
// picked below Linux's ephemeral range (32768-60999): a port the kernel
// handed out for ":0" could be taken by another socket bound to ":0"
// (a client's own SIP socket, another test's) before the daemon or the
// client binds it, which then fails with "Address already in use".
func portBelowEphemeral(t *testing.T, free func(addr string) bool) int {
	t.Helper()
	for range 50 {
		port := 20000 + rand.IntN(12000)
		if free(fmt.Sprintf("127.0.0.1:%d", port)) {
			return port
		}
	}
	t.Fatal("no port free below the ephemeral range after 50 tries")
	return 0
}

// portBusy says why addr (127.0.0.1:port) cannot be bound for UDP or TCP,
// or "" if both can.
func portBusy(addr string) string {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err.Error()
	}
	pc.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err.Error()
	}
	l.Close()
	return ""
}

// sipPorts are the two ports the client tests run at: 5060, where a
// client's URIs carry no port, and another, where every URI carries it
// (what a PUBLISH's entity then says must still name the presentity).
func sipPorts(t *testing.T) []sipPort {
	return []sipPort{
		{name: "5060", port: 5060, unusable: portBusy("127.0.0.1:5060")},
		{name: "other", port: freeSIPPort(t)},
	}
}

// use skips or fails a subtest at a port the daemon could not listen on.
func (p sipPort) use(t *testing.T) {
	t.Helper()
	if p.unusable == "" {
		return
	}
	if inCI {
		t.Fatalf("port %d is not free in CI: %s", p.port, p.unusable)
	}
	t.Skipf("port %d is taken on this machine (%s): skipping the case at the default port", p.port, p.unusable)
}

// clientDaemon is the real daemon serving UDP and TCP at each usable
// port, with pa and the admin API.
type clientDaemon struct {
	*daemon
	api string // the admin API's base URL
}

// startClientDaemon starts the daemon at the usable ports. Outside CI,
// a port found free that another program takes before the daemon binds
// it (5060: a softphone, sipp) is marked unusable in ports and the
// daemon started again without it, rather than the whole test failing.
func startClientDaemon(t *testing.T, ports []sipPort) *clientDaemon {
	t.Helper()
	bin := buildDaemon(t)
	pa := sdktest.Build(t, paPkg)
	for {
		d := startClientDaemonAt(t, bin, pa, ports)
		if inCI || !d.exitedAtStart() {
			d.serving(t)
			return withAdmin(t, d)
		}
		taken := false
		for i, p := range ports {
			if p.unusable == "" && strings.Contains(d.output(), fmt.Sprintf("127.0.0.1:%d: bind: address already in use", p.port)) {
				ports[i].unusable, taken = "taken while the daemon started", true
			}
		}
		if !taken {
			d.serving(t) // fails with the daemon's log
		}
	}
}

// exitedAtStart reports whether the daemon exited before it was serving.
func (d *daemon) exitedAtStart() bool {
	for range 500 {
		select {
		case <-d.done:
			return !strings.Contains(d.output(), "presenced serving")
		case <-time.After(20 * time.Millisecond):
		}
		if strings.Contains(d.output(), "presenced serving") {
			return false
		}
	}
	return false
}

func startClientDaemonAt(t *testing.T, bin, pa string, ports []sipPort) *daemon {
	t.Helper()
	var listen strings.Builder
	for _, p := range ports {
		if p.unusable != "" {
			continue
		}
		for _, tr := range []string{"udp", "tcp"} {
			fmt.Fprintf(&listen, "[[listen]]\ntransport = %q\naddress = \"127.0.0.1:%d\"\n", tr, p.port)
		}
	}
	return startDaemon(t, bin, "-config", writeConfig(t, fmt.Sprintf(`
[server]
data_dir = %q
%s
[admin]
listen = "127.0.0.1:0"
token = %q
[extension.pa]
path = %q
`, t.TempDir(), listen.String(), adminToken, pa)))
}

// withAdmin is d, started with an admin API guarded by adminToken, as a
// clientDaemon: what a client test asks the server goes through it.
func withAdmin(t *testing.T, d *daemon) *clientDaemon {
	t.Helper()
	return &clientDaemon{daemon: d, api: "http://" + d.admin(t)}
}

// get decodes the admin API's answer to GET path into v; a 404 leaves v
// as it is (a presentity with nothing is not found).
func (c *clientDaemon) get(t *testing.T, path string, v any) {
	t.Helper()
	req, err := http.NewRequest("GET", c.api+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("admin API GET %s: %v", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("admin API GET %s: %s", path, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("admin API GET %s: %v", path, err)
	}
}

// presentity is what the admin API shows of one presentity.
type presentity struct {
	Document     string `json:"document"`
	Publications []struct {
		ETag string `json:"etag"`
	} `json:"publications"`
	Subscriptions []struct {
		Watcher   string `json:"watcher"`
		Status    string `json:"status"`
		Transport string `json:"transport"`
	} `json:"subscriptions"`
}

type binding struct {
	Contact string `json:"contact"`
}

// serverView is what the server holds for a presentity: its document, its
// publications and watchers, and the contacts registered for it.
type serverView struct {
	presentity
	Bindings []binding `json:"bindings"`
}

func (c *clientDaemon) view(t *testing.T, aor string) serverView {
	t.Helper()
	var v serverView
	c.get(t, "/v1/presentities/presence/"+url.PathEscape(aor), &v.presentity)
	c.get(t, "/v1/bindings?aor="+url.QueryEscape(aor), &v.Bindings)
	return v
}

// open is whether a composed document says the presentity is reachable:
// some tuple's basic status is open.
func (v serverView) open() bool {
	return strings.Contains(v.Document, "<basic>open</basic>")
}

func (v serverView) String() string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// eventually polls cond every 100ms until it holds or timeout passes, then
// fails the test with what, and with the last thing cond reported.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen:\n%s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// client is a softphone's process; its stdout and stderr are collected
// as they come, for the test to read and to log if it fails.
type client struct {
	name   string
	cmd    *exec.Cmd
	out    logtest.Buffer
	exited chan struct{} // closed once it has exited
	err    error         // its exit, once exited
}

// startClient runs cmd; it is killed when the test ends if still running.
func startClient(t *testing.T, name string, cmd *exec.Cmd) *client {
	t.Helper()
	c := &client{name: name, cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &c.out, &c.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, c.out.String())
		}
	})
	return c
}

// waitExit waits for a client that was told to quit, and fails the test
// unless it exits 0 within the timeout.
func (c *client) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.exited:
		if c.err != nil {
			t.Fatalf("%s exited after quit: %v", c.name, c.err)
		}
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s of quit", c.name, timeout)
	}
}

// crash ends the client with SIGKILL, as a phone that loses power: it
// says nothing to the server.
func (c *client) crash(t *testing.T) {
	t.Helper()
	c.cmd.Process.Kill()
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not die on SIGKILL", c.name)
	}
}

// eachClientCase runs a client's presence case once per transport (UDP,
// TCP) and port of sipPorts, against one daemon, with the client program
// from its Debian package.
func eachClientCase(t *testing.T, program, pkg string, run func(t *testing.T, d *clientDaemon, bin, tr string, p sipPort)) {
	if testing.Short() {
		t.Skip("runs the daemon and " + program)
	}
	bin := needProgram(t, program, pkg)
	ports := sipPorts(t)
	d := startClientDaemon(t, ports)
	for _, p := range ports {
		for _, tr := range []string{"udp", "tcp"} {
			t.Run(tr+"/"+p.name, func(t *testing.T) {
				p.use(t)
				start := time.Now()
				run(t, d, bin, tr, p)
				t.Logf("%s", time.Since(start).Round(time.Millisecond))
			})
		}
	}
}
