package sdk

import (
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
