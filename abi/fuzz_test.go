package abi

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
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

// FuzzFields checks Fields against protowire's own field-by-field reading:
// both fail on the same messages, Fields hands over every varint and
// length-delimited field, and what it hands over, written again, walks the
// same.
func FuzzFields(f *testing.F) {
	f.Add((&Request{Op: OpPublish, Event: "presence", Publication: &Publication{ID: "p", Body: []byte("<x/>")}}).Marshal())
	f.Add([]byte{0x08, 0x96, 0x02, 0x15, 1, 2, 3, 4, 0x1a, 0x00, 0x23, 0x08, 0x01, 0x24})
	f.Add([]byte{0x0a, 0x05, 'a'})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		var want int
		var werr error
		for b := data; len(b) > 0; {
			_, typ, n := protowire.ConsumeField(b)
			if n < 0 {
				werr = protowire.ParseError(n)
				break
			}
			if typ == protowire.VarintType || typ == protowire.BytesType {
				want++
			}
			b = b[n:]
		}
		var got []Field
		err := Fields(data, func(f Field) error {
			got = append(got, f)
			return nil
		})
		if (err == nil) != (werr == nil) {
			t.Fatalf("% x: Fields says %v, protowire says %v", data, err, werr)
		}
		if err != nil {
			return
		}
		if len(got) != want {
			t.Fatalf("% x: %d fields handed over, %d in the message", data, len(got), want)
		}
		var again []byte
		for _, f := range got {
			again = protowire.AppendTag(again, f.Num, f.Type)
			if f.Type == protowire.VarintType {
				again = protowire.AppendVarint(again, f.Varint)
			} else {
				again = protowire.AppendBytes(again, f.Bytes)
			}
		}
		i := 0
		err = Fields(again, func(f Field) error {
			if g := got[i]; f.Num != g.Num || f.Type != g.Type || f.Varint != g.Varint || !bytes.Equal(f.Bytes, g.Bytes) {
				t.Fatalf("% x: field %d walked as %+v, written again as %+v", data, i, g, f)
			}
			i++
			return nil
		})
		if err != nil || i != len(got) {
			t.Fatalf("% x: written again, %d of %d fields walk, err %v", data, i, len(got), err)
		}
	})
}

func FuzzPresentity(f *testing.F) {
	for _, s := range []string{"sip:alice@example.com", "<sips:Alice@EXAMPLE.com:5061;transport=tls>", "pres:a%6Cice@example.com",
		`"Alice" <sip:alice@example.com:5060?subject=x>`, "sip:", ":", "", "tel:+123", "sip:@", "sip:a@[::1]:5060",
		"sip:a@b:99999999999999999999", "sip:%", "sip:a@[2001:DB8::0]x", "sip:+1;x=y?@b.c", "sip:a@b@c", "sip:j\xc3\xb6rg@b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		key, ok := Presentity(uri)
		if k, o := presentity(uri); k != key || o != ok {
			// the canonical fast path answers as the general one does
			t.Fatalf("Presentity(%q) = %q, %v; the general path %q, %v", uri, key, ok, k, o)
		}
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
