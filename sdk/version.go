package sdk

import (
	"bytes"
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
	"github.com/presenced/presenced/abi"
	"google.golang.org/protobuf/encoding/protowire"
)

// The first version each RFC gives the documents of one subscription;
// every later document carries one more (ABI.md §6: the host never makes
// a version skip a number).
const (
	VersionStartDialog      uint64 = 0 // RFC 4235, dialog-info
	VersionStartConference  uint64 = 1 // RFC 4575, conference-info
	VersionStartWatcherInfo uint64 = 0 // RFC 3858, watcherinfo
)

// VersionField is the field of a per-watcher state blob that NextVersion
// keeps the count of documents sent in, a varint. A module keeping more
// per watcher writes its own fields beside it, numbered above it, and
// reads them with abi.Fields, which hands it this one too, to skip.
const VersionField protowire.Number = 1

// NextVersion reads a watcher's state blob (Watcher.State) and returns the
// version the document about to be sent to it carries, start for the
// first, and the blob to send with that document (Notification.State,
// with StateChanged), to which the module may append fields of its own:
//
//	v, st := sdk.NextVersion(w.State, sdk.VersionStartConference)
//	st = protowire.AppendTag(st, 2, protowire.BytesType) // the module's own
//
// The blob counts documents sent, not the last version, so a package's
// start value is the module's choice at each call and never stored. A
// blob damaged before the count reads as nothing sent; a module that
// wants damage to fail the call walks the blob itself, as it does to read
// its own fields.
func NextVersion(state []byte, start uint64) (version uint64, next []byte) {
	var sent uint64
	_ = abi.Fields(state, func(f abi.Field) error {
		if f.IsVarint(VersionField) {
			sent = f.Varint
		}
		return nil
	})
	next = protowire.AppendTag(make([]byte, 0, 16), VersionField, protowire.VarintType)
	return start + sent, protowire.AppendVarint(next, sent+1)
}

// DigestField is the field of a watcher's state blob that NextDocument
// keeps the digest of what the watcher was last sent in, bytes, beside
// NextVersion's count. A module's own fields are numbered above it.
const DigestField protowire.Number = 2

// Digest returns a 64-bit hash (XXH64) of what a watcher sees, for
// NextDocument. Hash the rendering without what differs in every document
// (the version), or a digest of the module's own model of it, so that a
// change that is none for the watcher (a refresh, another watcher's view)
// sends it nothing. Work it out once for the watchers that see the same.
//
// Not a cryptographic hash: it only decides whether a watcher is sent a
// document again, and the documents are the presentity's own. In a Go
// guest SHA-256 cost 8.9 µs for 400 bytes, Digest 0.23 µs (RATIONALE.md).
func Digest(seen []byte) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), xxhash.Sum64(seen))
}

// NextDocument is NextVersion for a package that sends a watcher nothing
// when what it would see is what it last saw: send is false when w needs
// no full state (Watcher.Full) and its state holds digest (Digest).
// Otherwise version is the version the document carries, start for the
// first, and state the blob to send with it (Notification.State, with
// StateChanged), holding the count and the digest, to which the module
// may append fields of its own:
//
//	version, state, send := sdk.NextDocument(w, sdk.VersionStartDialog, sdk.Digest(seen))
//	if !send {
//		continue
//	}
//
// A blob without a digest, or damaged before it, reads as another
// document sent: the watcher is sent this one rather than the call fail.
func NextDocument(w Watcher, start uint64, digest []byte) (version uint64, state []byte, send bool) {
	var last []byte
	_ = abi.Fields(w.State, func(f abi.Field) error {
		if f.IsBytes(DigestField) {
			last = f.Bytes
		}
		return nil
	})
	if !w.Full && len(digest) > 0 && bytes.Equal(last, digest) {
		return 0, nil, false
	}
	version, state = NextVersion(w.State, start)
	state = protowire.AppendTag(state, DigestField, protowire.BytesType)
	return version, protowire.AppendBytes(state, digest), true
}
