package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// linphonec is Debian's linphone-cli console client, driven over its
// stdin as a user types at its prompt. It REGISTERs and PUBLISHes its
// presence through its one proxy, SUBSCRIBEs to each friend, and prints
// "Friend <name> is <status>" at each NOTIFY: that line is what its user
// sees of a friend's presence (its friend list shows names only).
type linphonec struct {
	*client
	stdin io.WriteCloser
}

// instanceOf is the instance id (RFC 5626 §4.1) of the linphonec living
// in home: linphonec writes one into its rc file at its first start and
// sends it as +sip.instance from then on; the tests write the rc file
// afresh at every start, so they keep it themselves, one per home.
func instanceOf(home string) string {
	h := sha256.Sum256([]byte(home))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// startLinphonec runs linphonec with its home (its friends database and
// history) in home, registered as identity through the server at
// 127.0.0.1:port over transport tr, on a random local port.
func startLinphonec(t *testing.T, bin, name, home, identity string, port int, tr string) *linphonec {
	t.Helper()
	udp, tcp := -1, 0 // -1: a random port, 0: none
	if tr == "tcp" {
		udp, tcp = 0, -1
	}
	// The route makes every request, SUBSCRIBE included, go to the server
	// over tr, as a phone configured with an outbound proxy does.
	proxy := fmt.Sprintf("<sip:127.0.0.1:%d;transport=%s>", port, tr)
	rc := fmt.Sprintf(`[sip]
sip_port=%d
sip_tcp_port=%d
sip_tls_port=0
default_proxy=0
[proxy_0]
reg_proxy=%s
reg_route=%s
reg_identity=%s
reg_expires=600
reg_sendregister=1
publish=1
[misc]
uuid=%s
`, udp, tcp, proxy, proxy, identity, instanceOf(home))
	if err := os.MkdirAll(filepath.Join(home, ".local", "share", "linphone"), 0o755); err != nil {
		t.Fatal(err)
	}
	rcFile := filepath.Join(home, "linphonerc")
	if err := os.WriteFile(rcFile, []byte(rc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", rcFile)
	cmd.Env = append(os.Environ(), "HOME="+home)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	return &linphonec{client: startClient(t, name, cmd), stdin: stdin}
}

// typeLine sends one line at the prompt.
func (l *linphonec) typeLine(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(l.stdin, line+"\n"); err != nil {
		t.Fatalf("%s: %s: %v", l.name, line, err)
	}
}

var friendIs = regexp.MustCompile(`Friend (.*) is ([A-Za-z ]+?)\s*$`)

// friendStatus is the last status linphonec printed for the friend at
// uri ("" before the first): Online, Offline, Busy, Away...
func (l *linphonec) friendStatus(uri string) string {
	status := ""
	for _, line := range strings.Split(l.out.String(), "\n") {
		if m := friendIs.FindStringSubmatch(line); m != nil && strings.Contains(m[1], "<"+uri+">") {
			status = m[2]
		}
	}
	return status
}

// Two linphonecs, alice publishing and bob watching her as a friend,
// against the real daemon over UDP and TCP, at 5060 and at another port.
// At each step both sides must agree: what bob's linphonec prints of
// alice, and what the admin API shows the server holds for her.
func TestLinphonePresence(t *testing.T) {
	eachClientCase(t, "linphonec", "linphone-cli", linphonePresence)
}

func linphonePresence(t *testing.T, d *clientDaemon, bin, tr string, p sipPort) {
	alice, bob := "alice-"+tr+"-"+p.name, "bob-"+tr+"-"+p.name
	host := "127.0.0.1"
	if p.port != 5060 {
		host = fmt.Sprintf("127.0.0.1:%d", p.port)
	}
	aliceURI := fmt.Sprintf("sip:%s@%s", alice, host)
	aor := "sip:" + alice + "@127.0.0.1"
	aliceHome := t.TempDir()
	startAlice := func() *linphonec {
		return startLinphonec(t, bin, "alice", aliceHome, fmt.Sprintf("\"Alice\" <%s>", aliceURI), p.port, tr)
	}

	// each step: bob's linphonec shows want for alice, and the server
	// holds what makes it so
	var b *linphonec
	step := func(what, want string, server func(serverView) bool) {
		t.Helper()
		eventually(t, 10*time.Second, what, func() (bool, string) {
			got, v := b.friendStatus(aliceURI), d.view(t, aor)
			return got == want && server(v), fmt.Sprintf("bob shows alice %q (want %q); the server holds:\n%s", got, want, v)
		})
	}

	a := startAlice()
	eventually(t, 10*time.Second, "alice registered and published", func() (bool, string) {
		v := d.view(t, aor)
		return len(v.Publications) == 1 && len(v.Bindings) == 1 && v.open(), v.String()
	})

	b = startLinphonec(t, bin, "bob", t.TempDir(), fmt.Sprintf("\"Bob\" <sip:%s@%s>", bob, host), p.port, tr)
	b.typeLine(t, "friend add Alice "+aliceURI)
	step("bob sees alice online", "Online", func(v serverView) bool {
		return len(v.Subscriptions) == 1 && strings.HasPrefix(v.Subscriptions[0].Watcher, "sip:"+bob+"@127.0.0.1") &&
			v.Subscriptions[0].Status == "active" && v.Subscriptions[0].Transport == strings.ToUpper(tr) &&
			len(v.Publications) == 1 && len(v.Bindings) == 1 && v.open()
	})

	// alice quits: linphonec removes its publication (PUBLISH, Expires: 0)
	// and its binding (REGISTER, Expires: 0). linphonec has no command
	// that un-PUBLISHes short of quitting.
	a.typeLine(t, "quit")
	a.waitExit(t, 10*time.Second)
	step("alice quit: bob sees her offline", "Offline", func(v serverView) bool {
		return len(v.Publications) == 0 && len(v.Bindings) == 0 && !v.open() && len(v.Subscriptions) == 1
	})

	a = startAlice()
	step("alice back: bob sees her online", "Online", func(v serverView) bool {
		return len(v.Publications) == 1 && len(v.Bindings) == 1 && v.open()
	})

	// alice's phone dies without a word (no un-REGISTER, no un-PUBLISH)
	// and starts again on another port. Its Contact carries the same
	// +sip.instance (linphonec keeps it in its rc file): one instance is
	// one binding (RFC 5626 §6), so the new contact replaces the dead
	// one, which would otherwise keep her online for its whole expiry
	// after she quits. A subtest of its own: it is the registrar's
	// binding identity that it checks, not the presence steps above.
	t.Run("restart after crash", func(t *testing.T) {
		before := d.view(t, aor).Bindings
		a.crash(t)
		a := startAlice()
		eventually(t, 5*time.Second, "alice's restarted instance replaces its binding", func() (bool, string) {
			v := d.view(t, aor)
			return len(v.Bindings) == 1 && len(before) == 1 && v.Bindings[0].Contact != before[0].Contact,
				fmt.Sprintf("before the crash: %v\nnow:\n%s", before, v)
		})
		a.typeLine(t, "quit")
		a.waitExit(t, 10*time.Second)
	})

	b.typeLine(t, "quit")
	b.waitExit(t, 10*time.Second)
}
