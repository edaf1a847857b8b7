package server

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
)

// TestUDPNotifyAsSipgo holds udpNotify's bytes equal to what sipgo writes
// for the same NOTIFY built as a request (notifyRequest), which the other
// transports send: the two ways to write a NOTIFY must not drift apart.
func TestUDPNotifyAsSipgo(t *testing.T) {
	contact := sip.Uri{Scheme: "sip", Host: "192.0.2.1", Port: 5060, UriParams: sip.NewParams()}
	contact.UriParams.Add("transport", "udp")
	s := &Server{contact: map[string]sip.Uri{"udp": contact}}
	s.udpContact = (&sip.ContactHeader{Address: contact}).String() + "\r\n"
	res := &resource{key: resourceKey{event: "presence", uri: "sip:alice@example.com"}}
	cases := []struct {
		name string
		id   identity
		sub  string
		n    *abi.Notification
		dest string
	}{
		{"body", identity{callID: "c1@host", localTag: "lt", remoteTag: "rt", transport: "UDP",
			localURI: "sip:alice@example.com", remoteURI: "sip:bob@example.com", target: "sip:bob@198.51.100.7:5070"},
			"active;expires=3600", &abi.Notification{ContentType: "application/pidf+xml", Body: []byte("<presence/>")}, "198.51.100.7:5070"},
		{"no body, event id, routes", identity{callID: "c2", localTag: "a", remoteTag: "b", transport: "udp", eventID: "7",
			localURI: "sip:alice@example.com", remoteURI: "sips:bob@example.com;transport=udp", target: "sip:bob@bob.example.com",
			routeSet: []string{"<sip:203.0.113.9;lr>", "<sip:proxy2.example.com;lr>"}},
			"terminated;reason=timeout", nil, "203.0.113.9:5060"},
		{"IPv6 target, host name route-less", identity{callID: "c3", localTag: "a", remoteTag: "b", transport: "UDP",
			localURI: "sip:alice@example.com", remoteURI: "sip:bob@example.com", target: "sip:bob@[2001:db8::5]:5062"},
			"pending", &abi.Notification{ContentType: "text/plain"}, "[2001:db8::5]:5062"},
		{"name target", identity{callID: "c4", localTag: "a", remoteTag: "b", transport: "UDP",
			localURI: "sip:alice@example.com", remoteURI: "sip:bob@example.com", target: "sip:bob@bob.example.com;transport=udp"},
			"active", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &dialog{res: res}
			d.setIdentity(c.id)
			got := string(s.udpNotify(d, c.sub, c.n))
			if want := s.notifyRequest(d, c.sub, c.n, "udp").String(); got != want {
				t.Fatalf("udpNotify wrote\n%q\nsipgo writes\n%q", got, want)
			}
			dest, ok := udpDestination(d)
			if c.dest == "" {
				if ok {
					t.Fatalf("destination %v for a host name", dest)
				}
				return
			}
			if want := netip.MustParseAddrPort(c.dest); !ok || dest != want {
				t.Fatalf("destination %v %v, want %v", dest, ok, want)
			}
		})
	}
}

// TestNotifyBranches holds the branches of the NOTIFYs a server sends
// over UDP distinct, each a token the read filter knows as ours
// (notifyBranch), and distinct from another server's (a restart's).
func TestNotifyBranches(t *testing.T) {
	var a, b udpNotifies
	seen := map[string]bool{}
	for range 1000 {
		br := a.branch()
		if !strings.HasPrefix(br, notifyBranch) || seen[br] {
			t.Fatalf("branch %q: not ours, or repeated", br)
		}
		if _, _, got, ours, _ := readNotifyResponse([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=" + br + "\r\n\r\n")); !ours || string(got) != br {
			t.Fatalf("branch %q read back as %q (ours %v)", br, got, ours)
		}
		seen[br] = true
	}
	if br := b.branch(); seen[br] || strings.Split(br, ".")[1] == strings.Split(a.branch(), ".")[1] {
		t.Fatalf("two servers' branches share their random part: %q", br)
	}
}
