package main

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The resource state and the per-watcher state, in protobuf wire format
// like the ABI, so a later version can add fields:
//
//	message State   { repeated Pub pubs = 1; uint64 clock = 2; }
//	message Pub     { string id = 1; bytes doc = 2; uint64 version = 3; uint64 modified = 4; }
//	message Watcher { uint64 version = 1; bytes hash = 2; bytes doc = 3; }
//
// Pub.doc is the publication's merged document, normalized and without
// state or version (confinfo.Canonical). Watcher.doc is the merged
// document last sent (only with use_partial_states), Watcher.hash its
// SHA-256 (always). These numbers never change.
const (
	fStatePub   = 1
	fStateClock = 2

	fPubID       = 1
	fPubDoc      = 2
	fPubVersion  = 3
	fPubModified = 4

	fWatVersion = 1
	fWatHash    = 2
	fWatDoc     = 3
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

type watcherState struct {
	version uint64
	hash    []byte
	doc     []byte
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
	err := fields(b, func(num protowire.Number, v []byte, n uint64) error {
		switch num {
		case fStatePub:
			var p pub
			err := fields(v, func(num protowire.Number, v []byte, n uint64) error {
				switch num {
				case fPubID:
					p.id = string(v)
				case fPubDoc:
					p.doc = v
				case fPubVersion:
					p.version = n
				case fPubModified:
					p.modified = n
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("publication %d: %w", len(s.pubs)+1, err)
			}
			s.pubs = append(s.pubs, p)
		case fStateClock:
			s.clock = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	return s, nil
}

func (w *watcherState) encode() []byte {
	var b []byte
	b = protowire.AppendTag(b, fWatVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, w.version)
	if len(w.hash) > 0 {
		b = protowire.AppendTag(b, fWatHash, protowire.BytesType)
		b = protowire.AppendBytes(b, w.hash)
	}
	if len(w.doc) > 0 {
		b = protowire.AppendTag(b, fWatDoc, protowire.BytesType)
		b = protowire.AppendBytes(b, w.doc)
	}
	return b
}

func decodeWatcher(b []byte) (*watcherState, error) {
	w := &watcherState{}
	err := fields(b, func(num protowire.Number, v []byte, n uint64) error {
		switch num {
		case fWatVersion:
			w.version = n
		case fWatHash:
			w.hash = v
		case fWatDoc:
			w.doc = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode watcher state: %w", err)
	}
	return w, nil
}

// fields calls f for each varint or length-delimited field of b, skipping
// other wire types.
func fields(b []byte, f func(num protowire.Number, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			if err := f(num, nil, v); err != nil {
				return err
			}
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			if err := f(num, v, 0); err != nil {
				return err
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}
