package main

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The state blob is protobuf wire format, the codec the ABI already uses,
// so it costs no new dependency and a later version can add fields:
//
//	message State       { repeated Publication pubs = 1; }
//	message Publication { string id = 1; bytes body = 2; }
//
// Bodies are kept raw, as published: they were validated once at PUBLISH,
// and keeping them whole means a rendering fix applies to stored state too.
const (
	fStatePub = 1
	fPubID    = 1
	fPubBody  = 2
)

type publication struct {
	id   string
	body []byte
}

// state is the publications of one presentity in the order they were first
// published, which is the order they are composed in.
type state struct {
	pubs []publication
}

// put adds a publication, or replaces the body of one already there in
// place so a modify does not reorder the composed document.
func (s *state) put(id string, body []byte) {
	for i := range s.pubs {
		if s.pubs[i].id == id {
			s.pubs[i].body = body
			return
		}
	}
	s.pubs = append(s.pubs, publication{id: id, body: body})
}

// remove drops a publication and reports whether it was there.
func (s *state) remove(id string) bool {
	for i := range s.pubs {
		if s.pubs[i].id == id {
			s.pubs = append(s.pubs[:i], s.pubs[i+1:]...)
			return true
		}
	}
	return false
}

func (s *state) encode() []byte {
	n := 0
	for _, p := range s.pubs {
		n += protowire.SizeTag(fStatePub) + protowire.SizeBytes(pubSize(p))
	}
	b := make([]byte, 0, n)
	for _, p := range s.pubs {
		b = protowire.AppendTag(b, fStatePub, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(pubSize(p)))
		b = protowire.AppendTag(b, fPubID, protowire.BytesType)
		b = protowire.AppendString(b, p.id)
		b = protowire.AppendTag(b, fPubBody, protowire.BytesType)
		b = protowire.AppendBytes(b, p.body)
	}
	return b
}

func pubSize(p publication) int {
	return protowire.SizeTag(fPubID) + protowire.SizeBytes(len(p.id)) +
		protowire.SizeTag(fPubBody) + protowire.SizeBytes(len(p.body))
}

// decodeState reads a blob encode wrote; an empty blob is no publications.
// The bodies alias b, which lives as long as the call.
func decodeState(b []byte) (*state, error) {
	s := &state{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("decode state: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num != fStatePub || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, fmt.Errorf("decode state: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, fmt.Errorf("decode state: publication %d: %w", len(s.pubs)+1, protowire.ParseError(n))
		}
		b = b[n:]
		p, err := decodePub(v)
		if err != nil {
			return nil, fmt.Errorf("decode state: publication %d: %w", len(s.pubs)+1, err)
		}
		s.pubs = append(s.pubs, p)
	}
	return s, nil
}

func decodePub(b []byte) (publication, error) {
	var p publication
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return p, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == fPubID && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return p, protowire.ParseError(n)
			}
			p.id, b = string(v), b[n:]
		case num == fPubBody && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return p, protowire.ParseError(n)
			}
			p.body, b = v, b[n:]
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return p, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return p, nil
}
