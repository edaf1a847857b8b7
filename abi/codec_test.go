package abi

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
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
		Notifications: []Notification{{WatcherID: "w", ContentType: "t/x", Body: []byte("b"), Partial: true, StateChanged: true, State: []byte{}, Status: StatusRejected}}}
	var out Response
	if err := out.Unmarshal(in.Marshal()); err != nil {
		t.Fatal(err)
	}
	if !out.StateChanged || out.State == nil || len(out.State) != 0 || !out.Notifications[0].StateChanged || !out.Notifications[0].Partial || out.Notifications[0].Status != StatusRejected {
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
// returns, and reuses the buffer when it is large enough.
func TestResponseMarshalAppend(t *testing.T) {
	in := Response{Code: 400, Reason: "bad", Notifications: []Notification{{WatcherID: "w", Body: []byte("b")}}}
	buf := append(make([]byte, 0, 256), "head"...)
	got := in.MarshalAppend(buf)
	if string(got[:4]) != "head" || string(got[4:]) != string(in.Marshal()) {
		t.Fatalf("MarshalAppend = %q, want head then %q", got, in.Marshal())
	}
	if &got[0] != &buf[0] {
		t.Error("MarshalAppend did not reuse a buffer large enough")
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
	for _, size := range []int{0, 1, 127, 128, 300, 16383, 16384, 20000} {
		for _, hint := range []int{0, 1, 127, 128, 16384, 1 << 21} {
			content := bytes.Repeat([]byte{'x'}, size)
			want := enc("head")
			want.msg(5, content)
			got := enc("head")
			at := got.open(5, hint)
			got = append(got, content...)
			got.close(at, hint)
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d, hint %d: % x, want % x", size, hint, got[:min(len(got), 12)], want[:min(len(want), 12)])
			}
		}
	}
}
