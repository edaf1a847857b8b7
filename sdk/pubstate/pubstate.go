// Package pubstate is a ready-made state blob for an event package whose
// state is "the live publications of a resource, by id, in arrival order":
// decode req.State, Put/Push/Remove the request's publication, Encode it
// into res.State; and Handler, the handler of such a package, which does
// that for each op and leaves the module how a publication goes in and
// what watchers are sent. It builds for GOOS=wasip1 and uses nothing but
// the SDK, abi's field walker and protowire, which the SDK already links.
package pubstate

import (
	"fmt"

	"github.com/presenced/presenced/abi"
	"google.golang.org/protobuf/encoding/protowire"
)

// The blob is protobuf wire format, the codec the ABI already uses, so it
// costs no new dependency and a later version can add fields (Decode skips
// fields it does not know):
//
//	message State       { repeated Publication pubs = 1; }
//	message Publication { string id = 1; bytes body = 2; }
//
// Bodies are kept raw, as published: a module validates them once, at
// PUBLISH, and keeping them whole means a rendering fix applies to stored
// state too. State written by an earlier module version must stay readable,
// so these numbers never change.
const (
	fStatePub = 1
	fPubID    = 1
	fPubBody  = 2
)

// Publication is one live publication: the host's id for it (stable across
// refreshes and modifies) and the body as published.
type Publication struct {
	ID   string
	Body []byte
}

// State is the live publications of one resource, in the order the module
// keeps them: Put leaves a modified publication where it was, Push moves it
// last. What the order means (composition order, most recent last) is the
// module's to say.
type State struct {
	Pubs []Publication
}

// Put adds a publication at the end, or replaces the body of the one with
// that id in place, so a modify does not reorder a composed document.
func (s *State) Put(id string, body []byte) {
	for i := range s.Pubs {
		if s.Pubs[i].ID == id {
			s.Pubs[i].Body = body
			return
		}
	}
	s.Pubs = append(s.Pubs, Publication{ID: id, Body: body})
}

// Push makes a publication, new or modified, the last one, for a module
// whose watchers get the most recently published or modified document.
func (s *State) Push(id string, body []byte) {
	s.Remove(id)
	s.Pubs = append(s.Pubs, Publication{ID: id, Body: body})
}

// Remove drops a publication and reports whether it was there, which is
// what res.StateChanged should say for an unpublish.
func (s *State) Remove(id string) bool {
	for i := range s.Pubs {
		if s.Pubs[i].ID == id {
			s.Pubs = append(s.Pubs[:i], s.Pubs[i+1:]...)
			return true
		}
	}
	return false
}

// Latest returns the last publication, which after Push is the most
// recent; ok is false when there is none.
func (s *State) Latest() (p Publication, ok bool) {
	if len(s.Pubs) == 0 {
		return Publication{}, false
	}
	return s.Pubs[len(s.Pubs)-1], true
}

// Encode returns the blob Decode reads; no publications is an empty blob.
func (s *State) Encode() []byte { return s.Append(make([]byte, 0, s.Size())) }

// Size is the length of the blob Encode returns.
func (s *State) Size() int {
	n := 0
	for _, p := range s.Pubs {
		n += protowire.SizeTag(fStatePub) + protowire.SizeBytes(pubSize(p))
	}
	return n
}

// Append appends the blob Encode returns to b, for a module whose state
// blob adds fields of its own after it into one buffer sized for both
// (Size): in a Go guest each buffer grown or copied costs more than the
// bytes in it.
func (s *State) Append(b []byte) []byte {
	for _, p := range s.Pubs {
		b = protowire.AppendTag(b, fStatePub, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(pubSize(p)))
		b = protowire.AppendTag(b, fPubID, protowire.BytesType)
		b = protowire.AppendString(b, p.ID)
		b = protowire.AppendTag(b, fPubBody, protowire.BytesType)
		b = protowire.AppendBytes(b, p.Body)
	}
	return b
}

func pubSize(p Publication) int {
	return protowire.SizeTag(fPubID) + protowire.SizeBytes(len(p.ID)) +
		protowire.SizeTag(fPubBody) + protowire.SizeBytes(len(p.Body))
}

// Decode reads a blob Encode wrote; an empty blob is no publications. The
// bodies alias b rather than copy it: req.State lives as long as the call,
// and a module keeps nothing longer. A field of a type other than the one
// Encode writes it with is skipped, as protobuf does.
func Decode(b []byte) (*State, error) {
	s := &State{}
	err := abi.Fields(b, func(f abi.Field) error {
		_, err := s.DecodeField(f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	return s, nil
}

// DecodeField reads f, a top-level field of a blob Encode wrote, into
// s.Pubs if it is a publication, and reports whether it was: for a module
// whose state blob adds fields of its own after pubstate's, to decode the
// whole blob in one pass into a State it holds, with room for its usual
// publications (in a Go guest each allocation costs more than the bytes
// decoded).
func (s *State) DecodeField(f abi.Field) (bool, error) {
	if !f.IsBytes(fStatePub) {
		return false, nil
	}
	p, err := decodePub(f.Bytes)
	if err != nil {
		return true, fmt.Errorf("publication %d: %w", len(s.Pubs)+1, err)
	}
	s.Pubs = append(s.Pubs, p)
	return true, nil
}

func decodePub(b []byte) (Publication, error) {
	var p Publication
	err := abi.Fields(b, func(f abi.Field) error {
		switch {
		case f.IsBytes(fPubID):
			p.ID = string(f.Bytes)
		case f.IsBytes(fPubBody):
			p.Body = f.Bytes
		}
		return nil
	})
	return p, err
}
