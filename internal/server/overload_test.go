package server_test

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/storetest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// rawPublish is a PUBLISH of body for alice from the socket c, built by
// hand so the test controls every header the refusal must copy.
func rawPublish(c net.Conn, branch, callID, body string) error {
	return rawPublishFor(c, "alice", branch, callID, body)
}

// rawPublishFor is rawPublish for sip:user@example.com.
func rawPublishFor(c net.Conn, user, branch, callID, body string) error {
	local := c.LocalAddr().String()
	m := "PUBLISH sip:" + user + "@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + user + "@example.com>;tag=raw1\r\n" +
		"t: <sip:" + user + "@example.com>\r\n" + // compact To, no tag
		"i: " + callID + "\r\n" +
		"CSeq: 7 PUBLISH\r\n" +
		"Event: echo\r\nExpires: 60\r\nContent-Type: text/plain\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	_, err := c.Write([]byte(m))
	return err
}

// Past max_in_flight, a UDP request is answered 503 in the socket's read
// loop, before sipgo parses it, with what RFC 3261 §8.2.6 asks of a
// response: the request's Vias, From, Call-ID and CSeq, a To tag; and
// Retry-After with a Warning. Once the slot is free, requests are served.
func TestOverloadRefusedOnRead(t *testing.T) {
	srv := startWith(t, server.Options{
		Listen:  []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Modules: []*extension.Module{echo(t)},
		Limits:  server.Limits{MaxInFlight: 1},
	})
	addr := addrOf(srv, "udp")
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The one slot is held by a call the echo module spins in until its
	// deadline (2 s); a probe sent while it is held must be refused by
	// the read filter, whose answer copies the request's compact headers
	// as they came ("i:", where sipgo would write "Call-ID:"). The held
	// request may itself lose the race for the slot to a probe, so it is
	// sent again until one holds.
	parser := sip.NewParser()
	buf := make([]byte, 4096)
	var res *sip.Response
	for attempt := 0; attempt < 10 && res == nil; attempt++ {
		if err := rawPublish(c, fmt.Sprintf("z9hG4bK-hold%d", attempt), fmt.Sprintf("hold%d@test", attempt), "loop"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		branch, callID := fmt.Sprintf("z9hG4bK-busy%d", attempt), fmt.Sprintf("busy%d@test", attempt)
		if err := rawPublish(c, branch, callID, "hello"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("no answer to %s: %v", branch, err)
			}
			if !strings.Contains(string(buf[:n]), "busy") {
				continue // a held request's answer
			}
			m, err := parser.ParseSIP(buf[:n])
			if err != nil {
				t.Fatalf("unparsable answer: %v\n%s", err, buf[:n])
			}
			if r, ok := m.(*sip.Response); ok && r.StatusCode == 503 && strings.Contains(string(buf[:n]), "\r\ni: "+callID+"\r\n") {
				res = r
				if v := r.Via(); v == nil || v.Params.GetOr("branch", "") != branch {
					t.Errorf("Via not the request's: %v", r.Via())
				}
			}
			break
		}
	}
	if res == nil {
		t.Fatal("no 503 from the read filter while the only slot was held")
	}
	if h := res.GetHeader("Retry-After"); h == nil || h.Value() != "1" {
		t.Errorf("Retry-After: %v", h)
	}
	if h := res.GetHeader("Warning"); h == nil || !strings.Contains(h.Value(), "server busy") {
		t.Errorf("Warning: %v", h)
	}
	if res.CSeq().SeqNo != 7 || res.CSeq().MethodName != sip.PUBLISH {
		t.Errorf("CSeq: %v", res.CSeq())
	}
	if tag, _ := res.To().Params.Get("tag"); tag == "" {
		t.Errorf("To without a tag: %v", res.To())
	}
	if tag, _ := res.From().Params.Get("tag"); tag != "raw1" {
		t.Errorf("From: %v", res.From())
	}
	// The held call ends (500 at its deadline); then a PUBLISH is served.
	p := siptest.NewPeer(t, "UDP", addr)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := p.Publish("echo", "sip:bob@example.com", "text/plain", "hello")
		if r.StatusCode == 200 {
			break
		}
		if r.StatusCode != 503 || time.Now().After(deadline) {
			t.Fatalf("after the held call: %d", r.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A request waiting for its commit needs no core, so while commits keep
// up max_in_flight does not count it: while a second connection holds
// the SQLite file's write lock (as an operator's sqlite3 in a write
// transaction would; a stall of the disk's flush holds commits the same
// way), PUBLISHes to distinct presentities past max_in_flight (2) are
// taken and wait, up to twice it in all; the ones past that are refused
// 503 in the read loop. Once the lock is let go, every one taken is
// answered 200. Those commits waited 300 ms, a writer behind: with the
// lock taken again, requests waiting for their commit count, and the
// third PUBLISH is refused.
func TestCommitWaitsOutsideMaxInFlight(t *testing.T) {
	path := filepath.Join(t.TempDir(), "presenced.db")
	st, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := startWith(t, server.Options{
		Listen:  []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Modules: []*extension.Module{echo(t)},
		Store:   st,
		Limits:  server.Limits{MaxInFlight: 2},
	})
	c, err := net.Dial("udp", addrOf(srv, "udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parser := sip.NewParser()
	buf := make([]byte, 4096)
	// round sends sent PUBLISHes under a held write lock, lets it go
	// and returns each one's answer and the last 503's Warning.
	round := func(name string, sent int) (codes map[string]int, busy string) {
		release := storetest.HoldWriteLock(t, path)
		for i := range sent {
			if err := rawPublishFor(c, fmt.Sprintf("%s%d", name, i), fmt.Sprintf("z9hG4bK-%s%d", name, i), fmt.Sprintf("%s%d@test", name, i), "hi"); err != nil {
				t.Fatal(err)
			}
			// Each reaches its commit before the next comes: the echo
			// module's call takes microseconds.
			time.Sleep(50 * time.Millisecond)
		}
		time.AfterFunc(300*time.Millisecond, release)
		codes = map[string]int{}
		c.SetReadDeadline(time.Now().Add(8 * time.Second))
		for len(codes) < sent {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("answers %v: %v", codes, err)
			}
			m, err := parser.ParseSIP(buf[:n])
			if err != nil {
				t.Fatalf("unparsable answer: %v\n%s", err, buf[:n])
			}
			r := m.(*sip.Response)
			codes[strings.TrimSuffix(r.CallID().Value(), "@test")] = r.StatusCode
			if h := r.GetHeader("Warning"); r.StatusCode == 503 && h != nil {
				busy = h.Value()
			}
		}
		return codes, busy
	}
	check := func(codes map[string]int, name string, sent, held int) {
		t.Helper()
		for i := range sent {
			want := 200
			if i >= held {
				want = 503
			}
			if got := codes[fmt.Sprintf("%s%d", name, i)]; got != want {
				t.Errorf("PUBLISH %s%d: %d, want %d (all: %v)", name, i, got, want, codes)
			}
		}
	}
	codes, busy := round("w", 6)
	check(codes, "w", 6, 4)
	if !strings.Contains(busy, "waiting for the store") {
		t.Errorf("503's Warning past twice max_in_flight: %q", busy)
	}
	codes, busy = round("x", 3)
	check(codes, "x", 3, 2)
	if !strings.Contains(busy, "server busy") || strings.Contains(busy, "waiting for the store") {
		t.Errorf("503's Warning with the writer behind: %q", busy)
	}
}
