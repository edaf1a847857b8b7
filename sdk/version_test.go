package sdk

import (
	"bytes"
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
