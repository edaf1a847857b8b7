package main

import (
	"fmt"
	"slices"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
	"google.golang.org/protobuf/encoding/protowire"
)

// The presence state blob is pubstate's (field 1, the publications in the
// order first published) followed by what this module adds. decodeState
// reads it in one pass, field 1 with pubstate's DecodeField, and a blob
// written before the additions still reads, as no bindings and no
// approvals:
//
//	message State {
//	  repeated pubstate.Publication pubs = 1;
//	  repeated Binding bindings = 2;  // registrar contacts, in arrival order
//	  repeated string  recent   = 3;  // publication ids, least recently modified first
//	  repeated string  allow    = 4;  // watchers the presentity approved (sdk.ResourceKey or domain)
//	  repeated string  block    = 5;  // watchers the presentity rejected
//	  repeated XMPPResource xmpp = 6;      // the jabber backend, see xmpp.go
//	  XMPPResource xmpp_offline  = 7;
//	}
//	message Binding { string id = 1; string contact = 2; string q = 3; int64 expires = 4; }
//
// These numbers never change: stored state outlives the module version.
const (
	fStateBinding = 2
	fStateRecent  = 3
	fStateAllow   = 4
	fStateBlock   = 5

	fBindID      = 1
	fBindContact = 2
	fBindQ       = 3
	fBindExpires = 4
)

type binding struct {
	ID, Contact, Q string
	ExpiresUnix    int64
}

// state is one presentity's presence state.
type state struct {
	pubstate.State
	Bindings []binding
	// Recent orders publication ids by modification, most recent last: the
	// person of the last one wins composition.
	Recent []string
	// Allow and Block are the presentity's approvals and rejections
	// (commands approve and reject).
	Allow, Block sdk.WatcherList
	// XMPP holds the available resources of the XMPP user the presentity
	// maps to, XMPPOffline the user once none is left (xmpp.go).
	XMPP        []xmppRes
	XMPPOffline *xmppRes

	// Room for the publications and ids of the usual presentity, one
	// device or two, so that decoding and adding one allocates nothing
	// beyond the state itself: each allocation costs more in a guest than
	// the bytes it holds.
	pubs   [2]pubstate.Publication
	recent [2]string
}

func decodeState(b []byte) (*state, error) {
	st := &state{}
	st.Pubs, st.Recent = st.pubs[:0], st.recent[:0]
	err := abi.Fields(b, func(f abi.Field) error {
		if ok, err := st.DecodeField(f); ok || err != nil {
			return err
		}
		if f.Type != protowire.BytesType {
			return nil
		}
		switch f.Num {
		case fStateBinding:
			bd, err := decodeBinding(f.Bytes)
			if err != nil {
				return fmt.Errorf("binding %d: %w", len(st.Bindings)+1, err)
			}
			st.Bindings = append(st.Bindings, bd)
		case fStateRecent:
			st.Recent = append(st.Recent, st.pubID(f.Bytes))
		case fStateAllow:
			st.Allow = append(st.Allow, string(f.Bytes))
		case fStateBlock:
			st.Block = append(st.Block, string(f.Bytes))
		case fStateXMPP, fStateXMPPOffline:
			return st.decodeXMPPField(f.Num, f.Bytes)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	st.normalizeRecent()
	return st, nil
}

// pubID returns id as a string, the live publication's own when there is
// one, as there is for each id of Recent but a stale one: in a guest
// another string of it was an allocation for each publication at every
// call.
func (st *state) pubID(id []byte) string {
	for _, p := range st.Pubs {
		if p.ID == string(id) {
			return p.ID
		}
	}
	return string(id)
}

// normalizeRecent makes Recent name each live publication once: ids it
// lacks (state from before it existed) count as older than any it has.
// A presentity has a few publications, so a scan finds one faster than a
// map, which was an allocation at every call in a guest.
func (st *state) normalizeRecent() {
	var missing []string
	for _, p := range st.Pubs {
		if !slices.Contains(st.Recent, p.ID) {
			missing = append(missing, p.ID)
		}
	}
	st.Recent = slices.DeleteFunc(st.Recent, func(id string) bool {
		return !slices.ContainsFunc(st.Pubs, func(p pubstate.Publication) bool { return p.ID == id })
	})
	if len(missing) > 0 {
		st.Recent = append(missing, st.Recent...)
	}
}

// put stores a new or modified publication: it keeps its place in the
// composition order and becomes the most recently modified.
func (st *state) put(id string, body []byte) {
	st.Put(id, body)
	st.Recent = append(slices.DeleteFunc(st.Recent, func(r string) bool { return r == id }), id)
}

func (st *state) remove(id string) bool {
	st.Recent = slices.DeleteFunc(st.Recent, func(r string) bool { return r == id })
	return st.Remove(id)
}

// setBinding adds, replaces or (removed) drops a binding and reports
// whether the state changed.
func (st *state) setBinding(b binding, removed bool) bool {
	i := slices.IndexFunc(st.Bindings, func(x binding) bool { return x.ID == b.ID })
	switch {
	case removed && i < 0:
		return false
	case removed:
		st.Bindings = slices.Delete(st.Bindings, i, i+1)
	case i < 0:
		st.Bindings = append(st.Bindings, b)
	case st.Bindings[i] == b:
		return false
	default:
		st.Bindings[i] = b
	}
	return true
}

// liveBindings drops bindings whose expiry has passed by the host's clock;
// the host also removes them (OpBinding with Removed), this only keeps a
// render between the two from showing a dead contact.
func (st *state) liveBindings(nowUnixNano int64) []binding {
	if nowUnixNano <= 0 {
		return st.Bindings
	}
	now := nowUnixNano / 1e9
	var out []binding
	for _, b := range st.Bindings {
		if b.ExpiresUnix <= 0 || b.ExpiresUnix > now {
			out = append(out, b)
		}
	}
	return out
}

func (st *state) encode() []byte {
	// One buffer sized for the whole blob (pubstate.State.Append); the
	// XMPP fields, rare, may grow it.
	n := st.Size()
	for _, bd := range st.Bindings {
		n += 32 + len(bd.ID) + len(bd.Contact) + len(bd.Q)
	}
	for _, l := range [][]string{st.Recent, st.Allow, st.Block} {
		for _, s := range l {
			n += 8 + len(s)
		}
	}
	b := st.Append(make([]byte, 0, n))
	for _, bd := range st.Bindings {
		var v []byte
		v = protowire.AppendTag(v, fBindID, protowire.BytesType)
		v = protowire.AppendString(v, bd.ID)
		v = protowire.AppendTag(v, fBindContact, protowire.BytesType)
		v = protowire.AppendString(v, bd.Contact)
		if bd.Q != "" {
			v = protowire.AppendTag(v, fBindQ, protowire.BytesType)
			v = protowire.AppendString(v, bd.Q)
		}
		if bd.ExpiresUnix != 0 {
			v = protowire.AppendTag(v, fBindExpires, protowire.VarintType)
			v = protowire.AppendVarint(v, uint64(bd.ExpiresUnix))
		}
		b = protowire.AppendTag(b, fStateBinding, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	for _, l := range []struct {
		num protowire.Number
		ids []string
	}{{fStateRecent, st.Recent}, {fStateAllow, st.Allow}, {fStateBlock, st.Block}} {
		for _, s := range l.ids {
			b = protowire.AppendTag(b, l.num, protowire.BytesType)
			b = protowire.AppendString(b, s)
		}
	}
	return st.appendXMPP(b)
}

func decodeBinding(b []byte) (binding, error) {
	var bd binding
	err := abi.Fields(b, func(f abi.Field) error {
		switch {
		case f.IsBytes(fBindID):
			bd.ID = string(f.Bytes)
		case f.IsBytes(fBindContact):
			bd.Contact = string(f.Bytes)
		case f.IsBytes(fBindQ):
			bd.Q = string(f.Bytes)
		case f.IsVarint(fBindExpires):
			bd.ExpiresUnix = int64(f.Varint)
		}
		return nil
	})
	return bd, err
}
