package sdk

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// A watcher's documents carry start, start+1, ... whatever the start, and
// fields a module appends after the counter survive and do not disturb it.
func TestNextVersion(t *testing.T) {
	for _, start := range []uint64{VersionStartDialog, VersionStartConference} {
		var st []byte
		for i := range uint64(3) {
			v, next := NextVersion(st, start)
			if v != start+i {
				t.Fatalf("start %d, document %d: version %d, want %d", start, i, v, start+i)
			}
			next = protowire.AppendTag(next, 2, protowire.BytesType)
			st = protowire.AppendBytes(next, []byte("hash"))
		}
	}
}

// The blob is the one pa and conference wrote before the helper (field 1,
// the count), so stored per-watcher state reads on.
func TestNextVersionBlob(t *testing.T) {
	v, next := NextVersion([]byte{0x08, 0x05}, VersionStartWatcherInfo)
	if v != 5 || !bytes.Equal(next, []byte{0x08, 0x06}) {
		t.Fatalf("version %d, blob %x; want 5, 0806", v, next)
	}
	// Damage after the count does not matter; damage before it is none sent.
	if v, _ := NextVersion([]byte{0x08, 0x05, 0x12, 0x7f}, 0); v != 5 {
		t.Fatalf("damaged after: version %d, want 5", v)
	}
	if v, _ := NextVersion([]byte{0x12, 0x7f, 0x08, 0x05}, 1); v != 1 {
		t.Fatalf("damaged before: version %d, want 1", v)
	}
}

// A watcher is sent a document when what it sees changed or it needs full
// state, with versions that go on from the last one sent; the same again
// sends nothing.
func TestNextDocument(t *testing.T) {
	a, b := Digest([]byte("early")), Digest([]byte("confirmed"))
	w := Watcher{ID: "w", Full: true}
	for i, c := range []struct {
		digest  []byte
		full    bool
		send    bool
		version uint64
	}{
		{a, true, true, 0},   // a new subscription
		{a, false, false, 0}, // the same again
		{b, false, true, 1},  // a change
		{b, true, true, 2},   // a refresh needs full state, changed or not
		{b, false, false, 0},
		{a, false, true, 3},
	} {
		w.Full = c.full
		v, st, send := NextDocument(w, VersionStartDialog, c.digest)
		if send != c.send || v != c.version {
			t.Fatalf("step %d: version %d, send %v; want %d, %v", i, v, send, c.version, c.send)
		}
		if send {
			w.State = st
		}
	}
	// the module's own field after the digest survives a reading
	w.State = protowire.AppendBytes(protowire.AppendTag(w.State, DigestField+1, protowire.BytesType), []byte("doc"))
	if _, _, send := NextDocument(w, VersionStartDialog, a); send {
		t.Fatal("a module's own field hid the digest")
	}
}

// The blob is the one conference wrote before the helper (count, then the
// digest of the document last sent, field 2), so its watchers are not
// sent again what they have; a damaged blob sends the document.
func TestNextDocumentBlob(t *testing.T) {
	d := Digest([]byte("<conference-info/>"))
	old := protowire.AppendBytes(protowire.AppendTag([]byte{0x08, 0x04}, 2, protowire.BytesType), d)
	if _, _, send := NextDocument(Watcher{State: old}, VersionStartConference, d); send {
		t.Fatal("an unchanged document was sent again")
	}
	v, st, send := NextDocument(Watcher{State: old}, VersionStartConference, Digest([]byte("<x/>")))
	if !send || v != 5 || !bytes.Equal(st[:2], []byte{0x08, 0x05}) {
		t.Fatalf("changed: version %d, send %v, state %x", v, send, st)
	}
	if _, _, send := NextDocument(Watcher{State: []byte{0x12, 0x7f}}, 1, d); !send {
		t.Fatal("a damaged blob sent nothing")
	}
}

// BenchmarkDigest is what a render pays for NextDocument's digest of a
// 400-byte document, beside the SHA-256 it replaced; run it inside wasm,
// where a module runs (sdk/sdktest/wasmrun), for the figures of
// RATIONALE.md.
func BenchmarkDigest(b *testing.B) {
	doc := bytes.Repeat([]byte("x"), 400)
	b.Run("xxh64", func(b *testing.B) {
		for b.Loop() {
			Digest(doc)
		}
	})
	b.Run("sha256", func(b *testing.B) {
		for b.Loop() {
			sha256.Sum256(doc)
		}
	})
}
