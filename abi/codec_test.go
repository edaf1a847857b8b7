package abi

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestRequestRoundTrip(t *testing.T) {
	in := Request{Op: OpPublish, Event: "presence", Resource: "sip:a@example.com", State: []byte{0, 1, 2},
		Publication: &Publication{ID: "p", ContentType: "application/pidf+xml", Body: []byte("<x/>"), ExpiresUnix: 1700000000},
		Watchers: []Watcher{{ID: "w1", URI: "sip:b@example.com", Accept: []string{"a/b", "c/d"}, Full: true, State: []byte("s")},
			{ID: "w2"}, {ID: "w3", Accept: []string{"a/b", "c/d"}}, {ID: "w4", URI: "sip:c@example.com"}},
		NowUnixNano:  42,
		Binding:      &Binding{ID: "b", Contact: "sip:a@pc", Q: "0.5", ExpiresUnix: 9, Removed: true},
		WatcherEvent: &WatcherEvent{ID: "w", URI: "sip:b@x", Status: StatusPending, Event: "subscribe", Duration: 3, Expires: 60},
		Command:      &Command{Name: "approve", Args: map[string]string{"watcher": "sip:b@x"}},
		XMPP:         &XMPPPresence{From: "juliet@x/balcony", Show: "away", Status: "out", Priority: -1, Lang: "en"}}
	in.Watchers[0].Status = StatusActive
	var out Request
	if err := out.Unmarshal(in.Marshal()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n%+v\n%+v", in, out)
	}
}

func TestResponseRoundTripKeepsEmptyState(t *testing.T) {
	in := Response{Code: 0, StateChanged: true, State: []byte{},
		Notifications: []Notification{{WatcherID: "w", ContentType: "t/x", Body: []byte("b"), Partial: true, StateChanged: true, State: []byte{}, Status: StatusRejected, ReuseUntilUnixNano: 1 << 62}}}
	var out Response
	if err := out.Unmarshal(in.Marshal()); err != nil {
		t.Fatal(err)
	}
	if !out.StateChanged || out.State == nil || len(out.State) != 0 || !out.Notifications[0].StateChanged || !out.Notifications[0].Partial || out.Notifications[0].Status != StatusRejected || out.Notifications[0].ReuseUntilUnixNano != 1<<62 {
		t.Fatalf("round trip: %+v", out)
	}
}

func TestManifestAndInitRoundTrip(t *testing.T) {
	m := Manifest{Packages: []Package{{Event: "presence", Accept: []string{"application/pidf+xml"}, DefaultExpires: 3600, Bindings: true, WatcherInfoOf: "x", MinExpires: 1, MaxExpires: 2}}, Commands: []string{"reset"}}
	var m2 Manifest
	if err := m2.Unmarshal(m.Marshal()); err != nil || !reflect.DeepEqual(m, m2) {
		t.Fatalf("manifest: %+v, %v", m2, err)
	}
	i := InitRequest{Name: "pa", Config: map[string]string{"a": "1", "b.c": "x"}}
	var i2 InitRequest
	if err := i2.Unmarshal(i.Marshal()); err != nil || !reflect.DeepEqual(i, i2) {
		t.Fatalf("init: %+v, %v", i2, err)
	}
}

// A newer peer's fields are skipped, whatever their wire type.
func TestUnknownFieldsAreSkipped(t *testing.T) {
	b := (&Request{Op: OpRender, Event: "presence"}).Marshal()
	b = protowire.AppendTag(b, 99, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 7)
	b = protowire.AppendTag(b, 100, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("future"))
	var r Request
	if err := r.Unmarshal(b); err != nil || r.Op != OpRender || r.Event != "presence" {
		t.Fatalf("%+v, %v", r, err)
	}
}

func TestTruncatedInputIsAnError(t *testing.T) {
	b := (&Request{Event: "presence", Resource: "sip:a@example.com"}).Marshal()
	var r Request
	if err := r.Unmarshal(b[:len(b)-3]); err == nil {
		t.Fatal("truncated message decoded without error")
	}
}

// MarshalAppend writes after what the buffer holds, the same bytes Marshal
// returns, and reuses the buffer when it is large enough: the host keeps
// one buffer per instance for requests, the SDK's glue one for responses.
func TestMarshalAppend(t *testing.T) {
	req := Request{Op: OpRender, Event: "presence", Resource: "sip:a@example.com", State: []byte("st"),
		Watchers: []Watcher{{ID: "w1", URI: "sip:b@example.com", Accept: []string{"a/b"}, Full: true}}}
	res := Response{Code: 400, Reason: "bad", Notifications: []Notification{{WatcherID: "w", Body: []byte("b")}}}
	for name, m := range map[string]interface {
		Marshal() []byte
		MarshalAppend([]byte) []byte
	}{"request": &req, "response": &res} {
		buf := append(make([]byte, 0, 256), "head"...)
		got := m.MarshalAppend(buf)
		if string(got[:4]) != "head" || string(got[4:]) != string(m.Marshal()) {
			t.Fatalf("%s: MarshalAppend = %q, want head then %q", name, got, m.Marshal())
		}
		if &got[0] != &buf[0] {
			t.Errorf("%s: MarshalAppend did not reuse a buffer large enough", name)
		}
	}
}

// Notifications handed one rendering (the same bytes) encode it once, as
// body_of the first that carried it, and decode with it again; equal bytes
// elsewhere in memory are encoded whole, and a body_of naming no earlier
// notification is refused.
func TestResponseSharedBody(t *testing.T) {
	doc, other := []byte("<presence/>"), []byte("<presence/>")
	in := Response{Notifications: []Notification{
		{WatcherID: "w1", ContentType: "a/b", Body: doc},
		{WatcherID: "w2", ContentType: "a/b", Body: doc, StateChanged: true, State: []byte("s")},
		{WatcherID: "w3", ContentType: "a/b", Body: other},
		{WatcherID: "w4", ContentType: "c/d", Body: other},
		{WatcherID: "w5", Status: StatusPending},
		{WatcherID: "w6", ContentType: "c/d", Body: other},
	}}
	enc := in.Marshal()
	if n := bytes.Count(enc, doc); n != 3 {
		t.Errorf("the document is encoded %d times, want 3 (w1, w3, w4; w2 and w6 by reference)", n)
	}
	var out Response
	if err := out.Unmarshal(enc); err != nil {
		t.Fatal(err)
	}
	for i, n := range out.Notifications {
		w := in.Notifications[i]
		if n.WatcherID != w.WatcherID || n.ContentType != w.ContentType || !bytes.Equal(n.Body, w.Body) ||
			!bytes.Equal(n.State, w.State) || n.Status != w.Status {
			t.Errorf("notification %d = %+v, want %+v", i, n, w)
		}
	}
	for _, bad := range [][]byte{
		notes(protowire.AppendVarint(protowire.AppendTag(nil, fNotBodyOf, protowire.VarintType), 2)), // itself
		notes(protowire.AppendVarint(protowire.AppendTag(nil, fNotBodyOf, protowire.VarintType), 1),
			protowire.AppendString(protowire.AppendTag(nil, fNotBody, protowire.BytesType), "x")),
	} {
		if err := (&Response{}).Unmarshal(bad); err == nil {
			t.Errorf("body_of accepted in %x", bad)
		}
	}
}

// notes encodes a response whose first notification carries a body and
// whose second is made of the given fields.
func notes(second ...[]byte) []byte {
	first := protowire.AppendString(protowire.AppendTag(nil, fNotBody, protowire.BytesType), "b")
	b := protowire.AppendBytes(protowire.AppendTag(nil, fResNotes, protowire.BytesType), first)
	return protowire.AppendBytes(protowire.AppendTag(b, fResNotes, protowire.BytesType), slices.Concat(second...))
}

// fanOut is a change to a presentity with n watchers: the request naming
// them, and the response handing each one rendering of 300 bytes.
func fanOut(n int) ([]byte, *Response) {
	req := Request{Op: OpPublish, Event: "presence", Resource: "sip:lamp@example.com", State: make([]byte, 350)}
	res := &Response{}
	doc := bytes.Repeat([]byte("x"), 300)
	for i := range n {
		id := fmt.Sprintf("w%04d-abcdefabcdef", i)
		req.Watchers = append(req.Watchers, Watcher{ID: id, URI: fmt.Sprintf("sip:w%d@example.com", i),
			Status: StatusActive, Accept: []string{"application/pidf+xml"}, State: []byte("0123456789ab")})
		res.Notifications = append(res.Notifications, Notification{WatcherID: id, ContentType: "application/pidf+xml",
			Body: doc, StateChanged: true, State: []byte("0123456789ab")})
	}
	return req.Marshal(), res
}

// BenchmarkFanOut is the codec's share of a module call for a change to a
// presentity with 1,000 watchers: decoding the request, encoding the
// response. Run it inside wasm, where a module runs
// (sdk/sdktest/wasmrun), for the figures of RATIONALE.md.
func BenchmarkFanOut(b *testing.B) {
	req, res := fanOut(1000)
	b.Run("decode-request", func(b *testing.B) {
		for b.Loop() {
			var r Request
			if err := r.Unmarshal(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode-response", func(b *testing.B) {
		var out []byte
		for b.Loop() {
			out = res.MarshalAppend(out[:0])
		}
		b.ReportMetric(float64(len(out)), "bytes")
	})
}

// A nested message written in place (open, close) encodes as one written
// apart and copied in (msg) does, whether its length takes the bytes the
// hint left for it, more, or fewer.
func TestNestedInPlace(t *testing.T) {
	for _, num := range []protowire.Number{5, 15, 16, 300} {
		for _, size := range []int{0, 1, 127, 128, 300, 16383, 16384, 20000} {
			for _, hint := range []int{0, 1, 127, 128, 16384, 1 << 21} {
				content := bytes.Repeat([]byte{'x'}, size)
				want := protowire.AppendBytes(protowire.AppendTag([]byte("head"), num, protowire.BytesType), content)
				got := enc("head")
				at := got.open(num, hint)
				got = append(got, content...)
				got.close(at, hint)
				if !bytes.Equal(got, want) {
					t.Fatalf("field %d, size %d, hint %d: % x, want % x", num, size, hint, got[:min(len(got), 12)], want[:min(len(want), 12)])
				}
			}
		}
	}
}

// The writers' one-byte paths (a field number under 16, a length or value
// under 128) write what protowire writes, on both sides of each bound.
func TestWritersAreProtowire(t *testing.T) {
	for _, num := range []protowire.Number{1, 15, 16, 300} {
		for _, v := range []uint64{1, 127, 128, 300, 1 << 40} {
			s := strings.Repeat("x", int(min(v, 300)))
			var got enc
			got.str(num, s)
			got.bytes(num, []byte(s))
			got.uint(num, v)
			want := protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
			want = protowire.AppendBytes(protowire.AppendTag(want, num, protowire.BytesType), []byte(s))
			want = protowire.AppendVarint(protowire.AppendTag(want, num, protowire.VarintType), v)
			if !bytes.Equal(got, want) {
				t.Fatalf("field %d, %d: % x, want % x", num, v, got, want)
			}
		}
	}
}

// Decoding a request allocates the same few times however many watchers
// it names: their strings are cut from one copy of the message
// (strtab), which needs the byte slices Fields hands over to keep their
// capacity into the message.
func TestDecodeAllocations(t *testing.T) {
	data, _ := fanOut(1000)
	var r Request
	if n := testing.AllocsPerRun(5, func() {
		if err := r.Unmarshal(data); err != nil {
			t.Fatal(err)
		}
	}); n > 4 {
		t.Errorf("decoding 1,000 watchers: %v allocations, want at most 4", n)
	}
	// The host's side: a response's notifications are one slice, sized
	// once, beside each watcher's ID.
	_, res := fanOut(1000)
	data = res.Marshal()
	var back Response
	if n := testing.AllocsPerRun(5, func() {
		if err := back.Unmarshal(data); err != nil {
			t.Fatal(err)
		}
	}); n > 1000+4 {
		t.Errorf("decoding 1,000 notifications: %v allocations, want at most 1,004", n)
	}
}
