package abi

import (
	"bytes"
	"strings"
	"testing"
)

type message interface {
	Marshal() []byte
	Unmarshal([]byte) error
}

// roundTrip checks that Unmarshal does not panic and that what it accepts
// marshals to bytes that unmarshal to a message marshalling the same.
func roundTrip(t *testing.T, data []byte, fresh func() message) {
	m := fresh()
	if err := m.Unmarshal(data); err != nil {
		return
	}
	once := m.Marshal()
	m2 := fresh()
	if err := m2.Unmarshal(once); err != nil {
		t.Fatalf("Unmarshal of Marshal's output: %v\nin:  %x\nout: %x", err, data, once)
	}
	if twice := m2.Marshal(); !bytes.Equal(once, twice) {
		t.Fatalf("round trip not stable:\nin:    %x\nonce:  %x\ntwice: %x", data, once, twice)
	}
}

func FuzzRequest(f *testing.F) {
	full := Request{Op: OpPublish, Event: "presence", Resource: "sip:a@example.com", State: []byte{0, 1, 2},
		Publication:  &Publication{ID: "p", ContentType: "application/pidf+xml", Body: []byte("<x/>"), ExpiresUnix: 1700000000},
		Watchers:     []Watcher{{ID: "w1", URI: "sip:b@example.com", Accept: []string{"a/b", "c/d"}, Full: true, State: []byte("s"), Status: StatusActive}, {ID: "w2"}},
		NowUnixNano:  42,
		Binding:      &Binding{ID: "b", Contact: "sip:a@pc", Q: "0.5", ExpiresUnix: 9, Removed: true},
		WatcherEvent: &WatcherEvent{ID: "w", URI: "sip:b@x", Status: StatusPending, Event: "subscribe", Duration: 3, Expires: 60},
		Command:      &Command{Name: "approve", Args: map[string]string{"watcher": "sip:b@x", "a": ""}},
		XMPP:         &XMPPPresence{From: "juliet@x/balcony", Show: "away", Status: "out", Priority: -1, Lang: "en"}}
	f.Add(full.Marshal())
	f.Add((&Request{Op: OpRender}).Marshal())
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func() message { return &Request{} })
	})
}

func FuzzResponse(f *testing.F) {
	f.Add((&Response{Code: 400, Reason: "bad", StateChanged: true, State: []byte{},
		Notifications: []Notification{{WatcherID: "w", ContentType: "t/x", Body: []byte("b"), Partial: true, StateChanged: true, State: []byte{}, Status: StatusRejected}}}).Marshal())
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func() message { return &Response{} })
	})
}

func FuzzManifest(f *testing.F) {
	f.Add((&Manifest{Packages: []Package{{Event: "presence", Accept: []string{"application/pidf+xml"}, DefaultExpires: 3600,
		Bindings: true, WatcherInfoOf: "presence.winfo", MinExpires: 60, MaxExpires: 7200}}, Commands: []string{"approve"}}).Marshal())
	f.Add([]byte{0x0a, 0x03, 'a', 'b', 'c'})
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func() message { return &Manifest{} })
	})
}

func FuzzInitRequest(f *testing.F) {
	f.Add((&InitRequest{Name: "pa", Config: map[string]string{"policy": "open", "x.y": ""}}).Marshal())
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func() message { return &InitRequest{} })
	})
}

func FuzzPresentity(f *testing.F) {
	for _, s := range []string{"sip:alice@example.com", "<sips:Alice@EXAMPLE.com:5061;transport=tls>", "pres:a%6Cice@example.com",
		`"Alice" <sip:alice@example.com:5060?subject=x>`, "sip:", ":", "", "tel:+123", "sip:@", "sip:a@[::1]:5060",
		"sip:a@b:99999999999999999999", "sip:%", "sip:a@[2001:DB8::0]x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		key, ok := Presentity(uri)
		if !ok {
			if key != "" {
				t.Fatalf("Presentity(%q) = %q, false", uri, key)
			}
			return
		}
		if again, ok := Presentity(key); !ok || again != key {
			t.Fatalf("Presentity(%q) = %q, whose presentity is %q, %v", uri, key, again, ok)
		}
		user, host, _ := strings.Cut(strings.TrimPrefix(key, "sip:"), "@")
		if !strings.HasPrefix(key, "sip:") || user == "" || host == "" ||
			strings.Contains(strings.TrimPrefix(strings.TrimSuffix(host, "]"), "["), "]") ||
			!strings.HasPrefix(host, "[") && strings.Contains(host, ":") {
			t.Fatalf("Presentity(%q) = %q: not sip:user@host without a port", uri, key)
		}
	})
}

func FuzzMediaType(f *testing.F) {
	for _, s := range []string{"application/pidf+xml", " Text/Plain ; charset=utf-8", ";", "", "a/b;c=\"d;e\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		m := MediaType(v)
		if MediaType(m) != m {
			t.Fatalf("MediaType is not idempotent on %q: %q then %q", v, m, MediaType(m))
		}
	})
}
