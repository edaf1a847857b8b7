package main

import (
	"fmt"

	"github.com/beevik/etree"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/extensions/conference/confinfo"
	"google.golang.org/protobuf/encoding/protowire"
)

// The resource state and the per-watcher state, in protobuf wire format
// like the ABI, so a later version can add fields:
//
//	message State   { repeated Pub pubs = 1; uint64 clock = 2; }
//	message Pub     { string id = 1; bytes doc = 2; uint64 version = 3; uint64 modified = 4; }
//	message Watcher { uint64 sent = 1; bytes hash = 2; bytes doc = 3; }
//
// Pub.doc is the publication's merged document, normalized and without
// state or version (confinfo.Canonical). Watcher.sent and Watcher.hash
// are sdk.NextDocument's: the count of documents sent, whose version is
// 1 + sent, and the sdk.Digest of the merged document last sent (always).
// Watcher.doc is that document (only with use_partial_states), for the
// next partial one. These numbers never change. A field of a type other
// than the one it is written with is skipped, as protobuf does.
const (
	fStatePub   = 1
	fStateClock = 2

	fPubID       = 1
	fPubDoc      = 2
	fPubVersion  = 3
	fPubModified = 4

	fWatDoc = 3 // after sdk.DigestField
)

type pub struct {
	id       string
	doc      []byte
	version  uint64 // the publisher's version of the last document applied
	modified uint64 // state.clock when last changed: the composition order
}

type state struct {
	pubs  []pub
	clock uint64
}

func (s *state) find(id string) int {
	for i := range s.pubs {
		if s.pubs[i].id == id {
			return i
		}
	}
	return -1
}

func (s *state) encode() []byte {
	var b []byte
	for _, p := range s.pubs {
		var m []byte
		m = protowire.AppendTag(m, fPubID, protowire.BytesType)
		m = protowire.AppendString(m, p.id)
		m = protowire.AppendTag(m, fPubDoc, protowire.BytesType)
		m = protowire.AppendBytes(m, p.doc)
		m = protowire.AppendTag(m, fPubVersion, protowire.VarintType)
		m = protowire.AppendVarint(m, p.version)
		m = protowire.AppendTag(m, fPubModified, protowire.VarintType)
		m = protowire.AppendVarint(m, p.modified)
		b = protowire.AppendTag(b, fStatePub, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	if s.clock != 0 {
		b = protowire.AppendTag(b, fStateClock, protowire.VarintType)
		b = protowire.AppendVarint(b, s.clock)
	}
	return b
}

func decodeState(b []byte) (*state, error) {
	s := &state{}
	err := abi.Fields(b, func(f abi.Field) error {
		switch {
		case f.IsBytes(fStatePub):
			p, err := decodePub(f.Bytes)
			if err != nil {
				return fmt.Errorf("publication %d: %w", len(s.pubs)+1, err)
			}
			s.pubs = append(s.pubs, p)
		case f.IsVarint(fStateClock):
			s.clock = f.Varint
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	return s, nil
}

func decodePub(b []byte) (pub, error) {
	var p pub
	err := abi.Fields(b, func(f abi.Field) error {
		switch {
		case f.IsBytes(fPubID):
			p.id = string(f.Bytes)
		case f.IsBytes(fPubDoc):
			p.doc = f.Bytes
		case f.IsVarint(fPubVersion):
			p.version = f.Varint
		case f.IsVarint(fPubModified):
			p.modified = f.Varint
		}
		return nil
	})
	return p, err
}

// appendSentDoc appends the canonical document sent to a watcher's state
// blob as sdk.NextDocument returned it.
func appendSentDoc(state, canon []byte) []byte {
	state = protowire.AppendTag(state, fWatDoc, protowire.BytesType)
	return protowire.AppendBytes(state, canon)
}

// sentDoc is the document a watcher was last sent, nil if its state holds
// none (the first document, or no use_partial_states when it was sent).
func sentDoc(state []byte) (*etree.Element, error) {
	var doc []byte
	err := abi.Fields(state, func(f abi.Field) error {
		if f.IsBytes(fWatDoc) {
			doc = f.Bytes
		}
		return nil
	})
	if err != nil || doc == nil {
		return nil, err
	}
	return confinfo.Decode(doc)
}
