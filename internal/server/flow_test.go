package server_test

import (
	"net"
	"testing"
	"time"

	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// A subscriber whose SUBSCRIBE connection is gone gets its NOTIFYs over
// the connection it registered on, while that one is open: the binding
// is found by the subscriber's instance or, without one, its Contact
// URI. Its Contact (port 9, where nothing listens) is unreachable, as a
// phone's behind NAT is.
func TestNotifyUsesTheRegistrationsConnection(t *testing.T) {
	const x = `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-0000000000f1>"`
	for _, tt := range []struct{ name, subContact, regContact string }{
		{"instance", "<sip:watcher@127.0.0.1:9;transport=tcp>" + x, "<sip:watcher@127.0.0.1:10;transport=tcp>" + x},
		{"uri", "<sip:watcher@127.0.0.1:9;transport=tcp>", "<sip:watcher@127.0.0.1:9;transport=tcp>"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, nil, echo(t))
			res := alice + tt.name
			c, err := net.Dial("tcp", f.addr["TCP"])
			if err != nil {
				t.Fatal(err)
			}
			sub := siptest.NewPeerOn(t, "TCP", c)
			r := sub.Send(siptest.Request{Method: "SUBSCRIBE", URI: res, Headers: []string{
				"From: <sip:watcher@example.com>;tag=fl", "To: <" + res + ">", "Call-ID: " + siptest.NewCallID(),
				"CSeq: 1 SUBSCRIBE", "Contact: " + tt.subContact, "Event: echo"}})
			siptest.WantCode(t, r, 200)
			sub.Notify()

			reg := f.peer(t, "TCP")
			siptest.WantCode(t, reg.Registration("sip:watcher@example.com").Send("Contact: "+tt.regContact), 200)
			c.Close()
			time.Sleep(200 * time.Millisecond) // for the server to see the connection go

			siptest.WantCode(t, f.peer(t, "UDP").Publish("echo", res, "text/plain", "over the registration"), 200)
			if n := reg.Notify(); string(n.Body()) != "over the registration" {
				t.Fatalf("NOTIFY on the registration's connection:\n%s", n)
			}
		})
	}
}

// A registration with another instance, or over UDP, is no flow for
// the subscriber: its NOTIFY goes to its Contact and, that failing, the
// subscription ends as before.
func TestNotifyIgnoresOtherRegistrations(t *testing.T) {
	f := start(t, nil, echo(t))
	c, err := net.Dial("tcp", f.addr["TCP"])
	if err != nil {
		t.Fatal(err)
	}
	sub := siptest.NewPeerOn(t, "TCP", c)
	r := sub.Send(siptest.Request{Method: "SUBSCRIBE", URI: alice, Headers: []string{
		"From: <sip:watcher@example.com>;tag=fl", "To: <" + alice + ">", "Call-ID: " + siptest.NewCallID(),
		"CSeq: 1 SUBSCRIBE", `Contact: <sip:watcher@127.0.0.1:9;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-0000000000f2>"`,
		"Event: echo"}})
	siptest.WantCode(t, r, 200)
	sub.Notify()
	other := f.peer(t, "TCP")
	siptest.WantCode(t, other.Registration("sip:watcher@example.com").Send(
		`Contact: <sip:watcher@127.0.0.1:9;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-0000000000f3>"`), 200)
	c.Close()
	time.Sleep(200 * time.Millisecond)
	siptest.WantCode(t, f.peer(t, "UDP").Publish("echo", alice, "text/plain", "v"), 200)
	other.Quiet(time.Second)
}
