package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// baresip is one baresip (Debian's baresip-core) run headless: no audio,
// no console, commands over its ctrl_tcp socket. Its presence module
// PUBLISHes the account's status (pubint) and SUBSCRIBEs to every contact
// marked presence=p2p; its contact list shows each one's status.
type baresip struct {
	*client
	ctl string // the ctrl_tcp address
}

// startBaresip runs baresip on the config directory dir with the given
// accounts and contacts files, and its presence module unless the caller
// loads it later (insmod). The SIP socket is a random port on loopback;
// account.so must load before presence.so, which reads the accounts and
// contacts once, when it starts.
func startBaresip(t *testing.T, bin, name, dir, accounts, contacts string, presence bool) *baresip {
	t.Helper()
	ctl := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	modules := "module account.so\nmodule_app contact.so\n"
	if presence {
		modules += "module_app presence.so\n"
	}
	files := map[string]string{
		"config": "sip_listen 127.0.0.1:0\n" +
			"module_path /usr/lib/baresip/modules\n" +
			modules +
			"module_app ctrl_tcp.so\n" +
			"ctrl_tcp_listen " + ctl + "\n",
		"accounts": accounts + "\n",
		"contacts": contacts + "\n",
	}
	for f, text := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := &baresip{client: startClient(t, name, exec.Command(bin, "-4", "-f", dir)), ctl: ctl}
	eventually(t, 10*time.Second, name+" opens its command socket", func() (bool, string) {
		select {
		case <-b.exited:
			t.Fatalf("%s exited at start: %v\n%s", name, b.err, b.out.String())
		default:
		}
		c, err := net.Dial("tcp", ctl)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
	return b
}

// startPublisher runs a baresip for the account (one line of its accounts
// file, with pubint) of the presentity aor and watching the contacts, and
// sets it online once it is registered. Its presence module is loaded
// then, not at start: baresip 1.0 PUBLISHes both from a timer 10ms after
// start and at its first 200 to REGISTER, and when the 200 comes first, as
// on loopback it may, both PUBLISHes carry open and no SIP-If-Match: two
// publications, of which quitting removes one, and the user would stay
// online after quitting. Loaded late, the timer's PUBLISH carries status
// "unknown", which the server refuses, and presence_online sends the only
// one. The module SUBSCRIBEs to the contacts marked presence=p2p as it
// loads.
func startPublisher(t *testing.T, d *clientDaemon, bin, name, dir, account, contacts, aor string) *baresip {
	t.Helper()
	b := startBaresip(t, bin, name, dir, account, contacts, false)
	eventually(t, 10*time.Second, name+" registered", func() (bool, string) {
		v := d.view(t, aor)
		return len(v.Bindings) == 1, v.String()
	})
	refused := strings.Count(d.output(), unknownRefused)
	b.command(t, "insmod presence.so")
	eventually(t, 5*time.Second, "the server refuses "+name+"'s PUBLISH of status unknown", func() (bool, string) {
		return strings.Count(d.output(), unknownRefused) > refused, d.output()
	})
	b.command(t, "presence_online")
	return b
}

// command runs one command as the user would type it, and returns what it
// printed. ctrl_tcp speaks netstrings of JSON; events (REGISTER_OK, ...)
// come on the same connection and are passed over.
func (b *baresip) command(t *testing.T, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.ctl, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %s: %v", b.name, cmd, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	name, params, _ := strings.Cut(cmd, " ")
	req, _ := json.Marshal(map[string]string{"command": name, "params": params, "token": "t"})
	fmt.Fprintf(c, "%d:%s,", len(req), req)
	r := bufio.NewReader(c)
	for {
		n, err := r.ReadString(':')
		if err != nil {
			t.Fatalf("%s: %s: %v", b.name, cmd, err)
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
		if err != nil {
			t.Fatalf("%s: %s: bad netstring length %q", b.name, cmd, n)
		}
		msg := make([]byte, size+1) // and the ','
		if _, err := io.ReadFull(r, msg); err != nil {
			t.Fatalf("%s: %s: %v", b.name, cmd, err)
		}
		var res struct {
			Response bool   `json:"response"`
			OK       bool   `json:"ok"`
			Data     string `json:"data"`
		}
		if err := json.Unmarshal(msg[:size], &res); err != nil {
			t.Fatalf("%s: %s: %v in %q", b.name, cmd, err, msg)
		}
		if !res.Response {
			continue
		}
		if !res.OK {
			t.Fatalf("%s: %s refused: %s", b.name, cmd, res.Data)
		}
		return res.Data
	}
}

var ansiColour = regexp.MustCompile("\x1b\\[[0-9;]*m")

// contactStatus is the presence status baresip's contact list shows for
// uri: Unknown, Online, Offline or Busy.
func (b *baresip) contactStatus(t *testing.T, uri string) string {
	t.Helper()
	list := ansiColour.ReplaceAllString(b.command(t, "contacts"), "")
	for _, line := range strings.Split(list, "\n") {
		// ">      Online Alice <sip:alice@127.0.0.1;transport=udp>"
		if f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), ">")); len(f) > 0 && strings.Contains(line, "<"+uri) {
			return f[0]
		}
	}
	t.Fatalf("%s: %s is not in the contact list:\n%s", b.name, uri, list)
	return ""
}

// awaitStatus waits for b's contact list to show uri as want.
func (b *baresip) awaitStatus(t *testing.T, uri, want string) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("%s shows %s %s", b.name, uri, want), func() (bool, string) {
		got := b.contactStatus(t, uri)
		return got == want, got
	})
}

// Two baresips, alice publishing and bob watching her, against the real
// daemon over UDP and TCP, at 5060 and at another port. What bob's
// contact list shows is what the user sees; the admin API shows what the
// server holds at each step.
func TestBaresipPresence(t *testing.T) {
	eachClientCase(t, "baresip", "baresip-core", baresipPresence)
}

func baresipPresence(t *testing.T, d *clientDaemon, bin, tr string, p sipPort) {
	// Names of their own for each case: what one case leaves on the
	// server (a watcher's subscription) does not show in another.
	alice, bob := "alice-"+tr+"-"+p.name, "bob-"+tr+"-"+p.name
	host := "127.0.0.1"
	if p.port != 5060 {
		host = fmt.Sprintf("127.0.0.1:%d", p.port)
	}
	aliceURI := fmt.Sprintf("sip:%s@%s;transport=%s", alice, host, tr)
	aor := "sip:" + alice + "@127.0.0.1" // the presentity: the port never counts
	aliceDir := t.TempDir()
	aliceAccount := fmt.Sprintf("<%s>;regint=600;pubint=600", aliceURI)
	// alice registers, then sets herself online (startPublisher says why
	// in that order)
	startAlice := func() *baresip {
		return startPublisher(t, d, bin, "alice", aliceDir, aliceAccount, "", aor)
	}

	a := startAlice()
	eventually(t, 10*time.Second, "alice published", func() (bool, string) {
		v := d.view(t, aor)
		return len(v.Publications) == 1 && len(v.Bindings) == 1 && v.open(), v.String()
	})

	// bob watches her and sees her online
	b := startBaresip(t, bin, "bob", t.TempDir(),
		fmt.Sprintf("<sip:%s@%s;transport=%s>;regint=600", bob, host, tr),
		fmt.Sprintf("\"Alice\" <%s>;presence=p2p", aliceURI), true)
	b.awaitStatus(t, aliceURI, "Online")
	v := d.view(t, aor)
	if len(v.Subscriptions) != 1 || !strings.HasPrefix(v.Subscriptions[0].Watcher, "sip:"+bob+"@127.0.0.1") ||
		v.Subscriptions[0].Status != "active" || v.Subscriptions[0].Transport != strings.ToUpper(tr) {
		t.Fatalf("bob's subscription to %s, over %s:\n%s", aor, tr, v)
	}

	// alice sets herself offline: a PUBLISH of closed. Her registration
	// still counts as open, so bob sees offline only because the server
	// puts her published tuple first and baresip reads the first one.
	a.command(t, "presence_offline")
	b.awaitStatus(t, aliceURI, "Offline")
	if v := d.view(t, aor); len(v.Publications) != 1 || firstBasic(v.Document) != "closed" {
		t.Fatalf("after presence_offline, the server holds:\n%s", v)
	}

	a.command(t, "presence_online")
	b.awaitStatus(t, aliceURI, "Online")

	// alice quits: baresip removes its publication (PUBLISH, Expires: 0)
	// and its binding (REGISTER, Expires: 0), long before either expires
	a.command(t, "quit")
	a.waitExit(t, 10*time.Second)
	b.awaitStatus(t, aliceURI, "Offline")
	eventually(t, 5*time.Second, "alice's publication and binding removed", func() (bool, string) {
		v := d.view(t, aor)
		return len(v.Publications) == 0 && len(v.Bindings) == 0 && !v.open(), v.String()
	})

	// and comes back: her registration alone shows her online to bob
	// already, her publication follows
	a = startAlice()
	b.awaitStatus(t, aliceURI, "Online")
	eventually(t, 5*time.Second, "alice back", func() (bool, string) {
		v := d.view(t, aor)
		return len(v.Publications) == 1 && len(v.Bindings) == 1 && firstBasic(v.Document) == "open", v.String()
	})

	b.command(t, "quit")
	a.command(t, "quit")
	b.waitExit(t, 10*time.Second)
	a.waitExit(t, 10*time.Second)
}

// unknownRefused is in the daemon's log line of a PUBLISH refused for
// baresip's status "unknown".
const unknownRefused = `<basic> is \"unknown\"`

var basicStatus = regexp.MustCompile(`<basic>(\w+)</basic>`)

// firstBasic is the basic status of a document's first tuple.
func firstBasic(doc string) string {
	if m := basicStatus.FindStringSubmatch(doc); m != nil {
		return m[1]
	}
	return ""
}
