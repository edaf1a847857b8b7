package pubstate

import (
	"bytes"
	"strings"
	"testing"

	"github.com/presenced/presenced/abi"
	"google.golang.org/protobuf/encoding/protowire"
)

func ids(s *State) string {
	var out []string
	for _, p := range s.Pubs {
		out = append(out, p.ID+"="+string(p.Body))
	}
	return strings.Join(out, " ")
}

// Put and Push differ only in where a modified publication goes.
func TestPutAndPush(t *testing.T) {
	for _, tt := range []struct {
		name string
		add  func(*State, string, []byte)
		want string
	}{
		{"put", (*State).Put, "a=3 b=2"},
		{"push", (*State).Push, "b=2 a=3"},
	} {
		var s State
		tt.add(&s, "a", []byte("1"))
		tt.add(&s, "b", []byte("2"))
		tt.add(&s, "a", []byte("3"))
		if got := ids(&s); got != tt.want {
			t.Errorf("after %s a, b, a: %s, want %s", tt.name, got, tt.want)
		}
	}
	s := State{Pubs: []Publication{{ID: "b", Body: []byte("2")}, {ID: "a", Body: []byte("3")}}}
	if p, ok := s.Latest(); !ok || p.ID != "a" || string(p.Body) != "3" {
		t.Fatalf("latest = %+v, %v", p, ok)
	}
}

func TestRemove(t *testing.T) {
	var s State
	s.Put("a", []byte("1"))
	s.Put("b", []byte("2"))
	if s.Remove("nobody") {
		t.Fatal("remove of an unknown id reported a change")
	}
	if !s.Remove("b") || ids(&s) != "a=1" {
		t.Fatalf("after remove b: %s", ids(&s))
	}
	if !s.Remove("a") || len(s.Pubs) != 0 {
		t.Fatalf("after remove a: %s", ids(&s))
	}
	if _, ok := s.Latest(); ok {
		t.Fatal("latest of no publications")
	}
}

// The wire format is what stored state already holds: it must not drift.
func TestEncodeIsStable(t *testing.T) {
	s := State{Pubs: []Publication{{ID: "a", Body: []byte("x")}, {ID: "", Body: nil}}}
	want := []byte{0x0a, 0x06, 0x0a, 0x01, 'a', 0x12, 0x01, 'x', 0x0a, 0x04, 0x0a, 0x00, 0x12, 0x00}
	if got := s.Encode(); !bytes.Equal(got, want) {
		t.Fatalf("encode = % x, want % x", got, want)
	}
	if got := (&State{}).Encode(); len(got) != 0 {
		t.Fatalf("empty state encodes to % x", got)
	}
}

func TestRoundTrip(t *testing.T) {
	var s State
	s.Put("p1", []byte("<presence/>"))
	s.Put("p2", bytes.Repeat([]byte("z"), 300)) // a two-byte length
	got, err := Decode(s.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if ids(got) != ids(&s) {
		t.Fatalf("round trip: %s, want %s", ids(got), ids(&s))
	}
	if empty, err := Decode(nil); err != nil || len(empty.Pubs) != 0 {
		t.Fatalf("decode of no blob: %+v, %v", empty, err)
	}
}

// A later version may add fields; this one must still read its blobs.
func TestDecodeSkipsUnknownFields(t *testing.T) {
	b := []byte{
		0x10, 0x07, // State field 2, varint 7
		0x0a, 0x09, 0x0a, 0x01, 'a', 0x18, 0x01, 0x12, 0x02, 'x', 'y', // pub with field 3 = 1
	}
	s, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if ids(s) != "a=xy" {
		t.Fatalf("decode = %s", ids(s))
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		blob []byte
		want string
	}{
		{[]byte{0x0a, 0x10, 'x'}, "decode state: field 1: "}, // the walker cannot read it, so names its field
		{[]byte{0x0a, 0x02, 0x0a, 0x05}, "decode state: publication 1: "},
		{[]byte{0x80}, "decode state: "},
		{[]byte{0x10}, "decode state: field 2: "},
	}
	for _, tt := range tests {
		if _, err := Decode(tt.blob); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("decode % x: err = %v, want %q...", tt.blob, err, tt.want)
		}
	}
}

// Append writes after what the buffer holds the very blob Encode returns,
// whose length Size gives, so that a module adding fields of its own can
// size one buffer for both.
func TestAppendAndSize(t *testing.T) {
	s := &State{}
	s.Put("a", []byte("one"))
	s.Put("b", nil)
	s.Put(strings.Repeat("i", 200), bytes.Repeat([]byte("x"), 300))
	enc := s.Encode()
	if s.Size() != len(enc) {
		t.Fatalf("Size %d, Encode %d bytes", s.Size(), len(enc))
	}
	if got := s.Append([]byte("head")); !bytes.Equal(got, append([]byte("head"), enc...)) {
		t.Fatalf("Append: % x, want head then % x", got, enc)
	}
	if got := (&State{}).Append(nil); len(got) != 0 {
		t.Fatalf("no publications appended % x", got)
	}
}

// DecodeField takes the publications of a blob a module added fields of
// its own to, and leaves those fields to the module.
func TestDecodeField(t *testing.T) {
	s := State{Pubs: []Publication{{ID: "a", Body: []byte("1")}, {ID: "b", Body: []byte("2")}}}
	blob := protowire.AppendString(protowire.AppendTag(s.Encode(), 2, protowire.BytesType), "mine")
	var got State
	var others []string
	err := abi.Fields(blob, func(f abi.Field) error {
		ok, err := got.DecodeField(f)
		if !ok {
			others = append(others, string(f.Bytes))
		}
		return err
	})
	if err != nil || ids(&got) != "a=1 b=2" || strings.Join(others, ",") != "mine" {
		t.Fatalf("got %s, others %q, %v", ids(&got), others, err)
	}
	bad := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0x0a, 0x05, 'x'})
	if _, err := Decode(bad); err == nil || !strings.Contains(err.Error(), "decode state: publication 1:") {
		t.Fatalf("truncated publication: %v", err)
	}
}
