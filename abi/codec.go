package abi

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"

	"google.golang.org/protobuf/encoding/protowire"
)

// The codec is written against protowire directly: no reflection and no
// generated code. In a stripped Go guest it measured +19 KB, against
// +497 KB for the same envelope in encoding/json.

type enc []byte

// head appends the tag of field n and, for a length-delimited field, its
// length or, for a varint, its value v: one byte each when under 128 (a
// field number under 16), the usual case, written inline, where
// protowire's general writers are calls a Go guest pays for at each field
// of each notification of a crowd (RATIONALE.md).
func (e *enc) head(n protowire.Number, t protowire.Type, v uint64) {
	if n < 16 && v < 0x80 {
		*e = append(*e, byte(n)<<3|byte(t), byte(v))
		return
	}
	*e = protowire.AppendTag(*e, n, t)
	*e = protowire.AppendVarint(*e, v)
}

func (e *enc) str(n protowire.Number, s string) {
	if s == "" {
		return
	}
	e.head(n, protowire.BytesType, uint64(len(s)))
	*e = append(*e, s...)
}

// bytes always writes the field, even empty, so "set to empty" survives.
func (e *enc) bytes(n protowire.Number, b []byte) {
	e.head(n, protowire.BytesType, uint64(len(b)))
	*e = append(*e, b...)
}

func (e *enc) optBytes(n protowire.Number, b []byte) {
	if len(b) > 0 {
		e.bytes(n, b)
	}
}

func (e *enc) uint(n protowire.Number, v uint64) {
	if v == 0 {
		return
	}
	e.head(n, protowire.VarintType, v)
}

func (e *enc) sint(n protowire.Number, v int64) { e.uint(n, uint64(v)) }

func (e *enc) bool(n protowire.Number, v bool) {
	if v {
		e.uint(n, 1)
	}
}

func (e *enc) msg(n protowire.Number, m []byte) { e.bytes(n, m) }

// open starts a nested message as field n, written in place after it:
// encoding it in a buffer of its own and copying that in was an
// allocation or more per message, each costing more in a Go guest than
// the message's bytes do. It leaves room for the length of a message of
// about hint bytes and returns where the message starts, for close.
func (e *enc) open(n protowire.Number, hint int) (start int) {
	if n < 16 && hint < 0x80 {
		*e = append(*e, byte(n)<<3|byte(protowire.BytesType), 0)
		return len(*e)
	}
	*e = protowire.AppendTag(*e, n, protowire.BytesType)
	*e = append(*e, make([]byte, protowire.SizeVarint(uint64(hint)))...)
	return len(*e)
}

// close writes the length of the message open started, hint as given to
// it, moving the message when its length takes more or fewer bytes than
// were left for it, so the encoding is the one msg gives.
func (e *enc) close(start, hint int) {
	if l := len(*e) - start; hint < 0x80 && l < 0x80 {
		(*e)[start-1] = byte(l)
		return
	}
	width := protowire.SizeVarint(uint64(hint))
	var lb [binary.MaxVarintLen64]byte
	l := protowire.AppendVarint(lb[:0], uint64(len(*e)-start))
	switch {
	case len(l) > width:
		*e = slices.Insert(*e, start, make([]byte, len(l)-width)...)
	case len(l) < width:
		*e = slices.Delete(*e, start-width+len(l), start)
	}
	copy((*e)[start-width:], l)
}

// decode walks a whole message with Fields and marks its errors as the
// codec's; the walks of nested messages return theirs unmarked, so an error
// is marked once.
func decode(data []byte, f func(Field) error) error {
	if err := Fields(data, f); err != nil {
		return fmt.Errorf("abi: %w", err)
	}
	return nil
}

// Marshal encodes an InitRequest. Config entries are sorted so that equal
// configs encode equally.
func (m *InitRequest) Marshal() []byte {
	var e enc
	e.str(fInitName, m.Name)
	e.entries(fInitConfig, m.Config)
	return e
}

// entries writes a string map as sorted key/value entries, so equal maps
// encode equally.
func (e *enc) entries(n protowire.Number, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var kv enc
		kv.str(fEntryKey, k)
		kv.str(fEntryValue, m[k])
		e.msg(n, kv)
	}
}

// entry decodes one key/value entry into m.
func entry(b []byte, m map[string]string) error {
	var k, v string
	err := Fields(b, func(f Field) error {
		switch f.Num {
		case fEntryKey:
			k = string(f.Bytes)
		case fEntryValue:
			v = string(f.Bytes)
		}
		return nil
	})
	m[k] = v
	return err
}

// Unmarshal decodes an InitRequest.
func (m *InitRequest) Unmarshal(data []byte) error {
	*m = InitRequest{Config: map[string]string{}}
	return decode(data, func(f Field) error {
		switch f.Num {
		case fInitName:
			m.Name = string(f.Bytes)
		case fInitConfig:
			return entry(f.Bytes, m.Config)
		}
		return nil
	})
}

// Marshal encodes a Manifest.
func (m *Manifest) Marshal() []byte {
	var e enc
	for _, p := range m.Packages {
		var pe enc
		pe.str(fPkgEvent, p.Event)
		for _, a := range p.Accept {
			pe.str(fPkgAccept, a)
		}
		pe.uint(fPkgExpires, uint64(p.DefaultExpires))
		pe.bool(fPkgBind, p.Bindings)
		pe.str(fPkgWinfo, p.WatcherInfoOf)
		pe.uint(fPkgMin, uint64(p.MinExpires))
		pe.uint(fPkgMax, uint64(p.MaxExpires))
		e.msg(fManPackages, pe)
	}
	for _, c := range m.Commands {
		e.str(fManCommands, c)
	}
	return e
}

// Unmarshal decodes a Manifest.
func (m *Manifest) Unmarshal(data []byte) error {
	*m = Manifest{}
	return decode(data, func(f Field) error {
		switch f.Num {
		case fManPackages:
			var p Package
			err := Fields(f.Bytes, func(f Field) error {
				switch f.Num {
				case fPkgEvent:
					p.Event = string(f.Bytes)
				case fPkgAccept:
					p.Accept = append(p.Accept, string(f.Bytes))
				case fPkgExpires:
					p.DefaultExpires = uint32(f.Varint)
				case fPkgBind:
					p.Bindings = f.Varint != 0
				case fPkgWinfo:
					p.WatcherInfoOf = string(f.Bytes)
				case fPkgMin:
					p.MinExpires = uint32(f.Varint)
				case fPkgMax:
					p.MaxExpires = uint32(f.Varint)
				}
				return nil
			})
			if err != nil {
				return err
			}
			m.Packages = append(m.Packages, p)
		case fManCommands:
			m.Commands = append(m.Commands, string(f.Bytes))
		}
		return nil
	})
}

// sizeHint is a little over the encoded size of m: its variable parts
// plus room for tags, lengths and the small fields.
func (m *Request) sizeHint() int {
	n := 64 + len(m.Event) + len(m.Resource) + len(m.State)
	if p := m.Publication; p != nil {
		n += 16 + p.sizeHint()
	}
	for i := range m.Watchers {
		n += 8 + m.Watchers[i].sizeHint()
	}
	if b := m.Binding; b != nil {
		n += 48 + len(b.ID) + len(b.Contact) + len(b.Q)
	}
	if w := m.WatcherEvent; w != nil {
		n += 64 + len(w.ID) + len(w.URI)
	}
	return n
}

// sizeHint is a little over the encoded size of p.
func (p *Publication) sizeHint() int { return 32 + len(p.ID) + len(p.ContentType) + len(p.Body) }

// sizeHint is a little over the encoded size of w.
func (w *Watcher) sizeHint() int {
	n := 24 + len(w.ID) + len(w.URI) + len(w.State) + len(w.Status)
	for _, a := range w.Accept {
		n += 4 + len(a)
	}
	return n
}

// Marshal encodes a Request.
func (m *Request) Marshal() []byte { return m.MarshalAppend(nil) }

// MarshalAppend appends the encoding of m to b, for a caller that reuses
// one buffer for every request: the host keeps one per instance.
func (m *Request) MarshalAppend(b []byte) []byte {
	// Sized up front: grown by append, the encoding of a render's state
	// and watchers was reallocated several times per call.
	e := enc(slices.Grow(b, m.sizeHint()))
	e.uint(fReqOp, uint64(m.Op))
	e.str(fReqEvent, m.Event)
	e.str(fReqResource, m.Resource)
	e.optBytes(fReqState, m.State)
	if p := m.Publication; p != nil {
		hint := p.sizeHint()
		at := e.open(fReqPublication, hint)
		e.str(fPubID, p.ID)
		e.str(fPubType, p.ContentType)
		e.optBytes(fPubBody, p.Body)
		e.sint(fPubExpires, p.ExpiresUnix)
		e.close(at, hint)
	}
	for i := range m.Watchers {
		w := &m.Watchers[i]
		hint := w.sizeHint()
		at := e.open(fReqWatchers, hint)
		e.str(fWatID, w.ID)
		e.str(fWatURI, w.URI)
		for _, a := range w.Accept {
			e.str(fWatAccept, a)
		}
		e.bool(fWatFull, w.Full)
		e.optBytes(fWatState, w.State)
		e.str(fWatStatus, w.Status)
		e.close(at, hint)
	}
	e.sint(fReqNow, m.NowUnixNano)
	if b := m.Binding; b != nil {
		var be enc
		be.str(fBindID, b.ID)
		be.str(fBindContact, b.Contact)
		be.str(fBindQ, b.Q)
		be.sint(fBindExpires, b.ExpiresUnix)
		be.bool(fBindRemoved, b.Removed)
		e.msg(fReqBinding, be)
	}
	if w := m.WatcherEvent; w != nil {
		var we enc
		we.str(fWevID, w.ID)
		we.str(fWevURI, w.URI)
		we.str(fWevStatus, w.Status)
		we.str(fWevEvent, w.Event)
		we.sint(fWevDuration, w.Duration)
		we.sint(fWevExpires, w.Expires)
		e.msg(fReqWatcherEv, we)
	}
	if c := m.Command; c != nil {
		var ce enc
		ce.str(fCmdName, c.Name)
		ce.entries(fCmdArgs, c.Args)
		e.msg(fReqCommand, ce)
	}
	if x := m.XMPP; x != nil {
		var xe enc
		xe.str(fXMPPFrom, x.From)
		xe.str(fXMPPType, x.Type)
		xe.str(fXMPPShow, x.Show)
		xe.str(fXMPPStatus, x.Status)
		xe.uint(fXMPPPrio, uint64(int64(x.Priority)))
		xe.str(fXMPPLang, x.Lang)
		e.msg(fReqXMPP, xe)
	}
	return e
}

// Unmarshal decodes a Request. Byte fields alias data. Its strings are
// cut from one copy of data, and watchers with the same Accept list share
// one slice: a module decodes every watcher of a presentity on each of
// its changes, and in a Go guest five allocations a watcher cost more
// than the copy; so did the request's own strings (RATIONALE.md).
func (m *Request) Unmarshal(data []byte) error {
	*m = Request{}
	t := strtab{data: data}
	var scratch [4]string
	accept := scratch[:0] // the watcher's, read into one scratch slice
	var first *firstWatcher
	return decode(data, func(f Field) error {
		switch f.Num {
		case fReqOp:
			m.Op = Op(f.Varint)
		case fReqEvent:
			m.Event = t.str(f.Bytes)
		case fReqResource:
			m.Resource = t.str(f.Bytes)
		case fReqState:
			m.State = f.Bytes
		case fReqPublication:
			p := &Publication{}
			err := Fields(f.Bytes, func(f Field) error {
				switch f.Num {
				case fPubID:
					p.ID = t.str(f.Bytes)
				case fPubType:
					p.ContentType = t.str(f.Bytes)
				case fPubBody:
					p.Body = f.Bytes
				case fPubExpires:
					p.ExpiresUnix = int64(f.Varint)
				}
				return nil
			})
			if err != nil {
				return err
			}
			m.Publication = p
		case fReqWatchers:
			if len(m.Watchers) == 1 && cap(m.Watchers) == 1 {
				// A second watcher: room for all of them at once. Not
				// counted before the first, as most calls have one or
				// none, and a walk of the message costs about a
				// microsecond in a guest.
				m.Watchers = slices.Grow(m.Watchers, count(data, fReqWatchers)-1)
			}
			if m.Watchers == nil {
				first = &firstWatcher{}
				m.Watchers = first.w[:0]
			}
			var w Watcher
			accept = accept[:0]
			err := Fields(f.Bytes, func(f Field) error {
				switch f.Num {
				case fWatID:
					w.ID = t.str(f.Bytes)
				case fWatURI:
					w.URI = t.str(f.Bytes)
				case fWatAccept:
					accept = append(accept, t.str(f.Bytes))
				case fWatFull:
					w.Full = f.Varint != 0
				case fWatState:
					w.State = f.Bytes
				case fWatStatus:
					w.Status = t.str(f.Bytes)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(accept) > 0 {
				if i := len(m.Watchers) - 1; i >= 0 && slices.Equal(m.Watchers[i].Accept, accept) {
					w.Accept = m.Watchers[i].Accept
				} else if i < 0 && len(accept) <= len(first.accept) {
					w.Accept = first.accept[:len(accept):len(accept)]
					copy(w.Accept, accept)
				} else {
					w.Accept = slices.Clone(accept)
				}
			}
			m.Watchers = append(m.Watchers, w)
		case fReqNow:
			m.NowUnixNano = int64(f.Varint)
		case fReqBinding:
			b := &Binding{}
			m.Binding = b
			return Fields(f.Bytes, func(f Field) error {
				switch f.Num {
				case fBindID:
					b.ID = t.str(f.Bytes)
				case fBindContact:
					b.Contact = t.str(f.Bytes)
				case fBindQ:
					b.Q = t.str(f.Bytes)
				case fBindExpires:
					b.ExpiresUnix = int64(f.Varint)
				case fBindRemoved:
					b.Removed = f.Varint != 0
				}
				return nil
			})
		case fReqWatcherEv:
			w := &WatcherEvent{}
			m.WatcherEvent = w
			return Fields(f.Bytes, func(f Field) error {
				switch f.Num {
				case fWevID:
					w.ID = t.str(f.Bytes)
				case fWevURI:
					w.URI = t.str(f.Bytes)
				case fWevStatus:
					w.Status = t.str(f.Bytes)
				case fWevEvent:
					w.Event = t.str(f.Bytes)
				case fWevDuration:
					w.Duration = int64(f.Varint)
				case fWevExpires:
					w.Expires = int64(f.Varint)
				}
				return nil
			})
		case fReqCommand:
			c := &Command{Args: map[string]string{}}
			m.Command = c
			return Fields(f.Bytes, func(f Field) error {
				switch f.Num {
				case fCmdName:
					c.Name = t.str(f.Bytes)
				case fCmdArgs:
					return entry(f.Bytes, c.Args)
				}
				return nil
			})
		case fReqXMPP:
			x := &XMPPPresence{}
			m.XMPP = x
			return Fields(f.Bytes, func(f Field) error {
				switch f.Num {
				case fXMPPFrom:
					x.From = t.str(f.Bytes)
				case fXMPPType:
					x.Type = t.str(f.Bytes)
				case fXMPPShow:
					x.Show = t.str(f.Bytes)
				case fXMPPStatus:
					x.Status = t.str(f.Bytes)
				case fXMPPPrio:
					x.Priority = int32(int64(f.Varint))
				case fXMPPLang:
					x.Lang = t.str(f.Bytes)
				}
				return nil
			})
		}
		return nil
	})
}

// firstWatcher is a request's first watcher and its Accept list, in one
// allocation where they were two: most calls have one watcher, and in a
// Go guest an allocation costs more than the few strings it holds.
type firstWatcher struct {
	w      [1]Watcher
	accept [4]string
}

// strtab makes the strings of one message as substrings of a single copy
// of it, made on first use; a byte slice that is not data's own is copied
// alone.
type strtab struct {
	data []byte
	s    string
}

func (t *strtab) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	off := cap(t.data) - cap(b)
	if off < 0 || off+len(b) > len(t.data) || &t.data[off] != &b[0] {
		return string(b)
	}
	if t.s == "" {
		t.s = string(t.data)
	}
	return t.s[off : off+len(b)]
}

// count returns how many fields numbered num data holds at its top level.
func count(data []byte, num protowire.Number) int {
	n := 0
	_ = Fields(data, func(f Field) error {
		if f.Num == num {
			n++
		}
		return nil
	})
	return n
}

// Marshal encodes a Response.
func (m *Response) Marshal() []byte { return m.MarshalAppend(nil) }

// MarshalAppend appends the encoding of m to b, for a caller that reuses
// one buffer for every response.
func (m *Response) MarshalAppend(b []byte) []byte {
	// Sized up front, and one scratch buffer for every notification: in a
	// Go guest an allocation of 1 KB costs about 1 µs, and growing the
	// encoding by append was a good part of a small call's cost.
	e := enc(slices.Grow(b, m.sizeHint()))
	e.uint(fResCode, uint64(m.Code))
	e.str(fResReason, m.Reason)
	if m.StateChanged {
		e.bytes(fResState, m.State)
		e.bool(fResChanged, true)
	}
	carrier := -1 // the last notification that carried its body
	for i := range m.Notifications {
		n := &m.Notifications[i]
		shared := carrier >= 0 && sameBody(n, &m.Notifications[carrier])
		hint := n.sizeHint(shared)
		at := e.open(fResNotes, hint)
		e.str(fNotWatcher, n.WatcherID)
		if shared {
			// One document rendered for many watchers goes once (1.2).
			e.uint(fNotBodyOf, uint64(carrier+1))
		} else {
			e.str(fNotType, n.ContentType)
			e.optBytes(fNotBody, n.Body)
			if len(n.Body) > 0 {
				carrier = i
			}
		}
		e.bool(fNotPartial, n.Partial)
		e.str(fNotStatus, n.Status)
		if n.StateChanged {
			e.bytes(fNotState, n.State)
			e.bool(fNotChanged, true)
		}
		if n.ReuseUntilUnixNano > 0 {
			e.uint(fNotReuse, uint64(n.ReuseUntilUnixNano))
		}
		e.close(at, hint)
	}
	return e
}

// sizeHint is a little over the encoded size of n, without its body and
// content type when it shares them with an earlier notification.
func (n *Notification) sizeHint(shared bool) int {
	s := 40 + len(n.WatcherID) + len(n.Status) + len(n.State)
	if !shared {
		s += len(n.ContentType) + len(n.Body)
	}
	return s
}

// sameBody reports whether n carries the very body of c (the same bytes
// in memory, as a module hands one rendering to many watchers) with the
// same content type.
func sameBody(n, c *Notification) bool {
	return len(n.Body) > 0 && len(n.Body) == len(c.Body) && &n.Body[0] == &c.Body[0] && n.ContentType == c.ContentType
}

// sizeHint is a little over the encoded size of m.
func (m *Response) sizeHint() int {
	n := 32 + len(m.Reason) + len(m.State)
	for i := range m.Notifications {
		// a shared body is written once
		n += 8 + m.Notifications[i].sizeHint(i > 0 && sameBody(&m.Notifications[i], &m.Notifications[i-1]))
	}
	return n
}

// Unmarshal decodes a Response. Byte fields alias data.
func (m *Response) Unmarshal(data []byte) error {
	*m = Response{}
	return decode(data, func(f Field) error {
		switch f.Num {
		case fResCode:
			m.Code = uint32(f.Varint)
		case fResReason:
			m.Reason = string(f.Bytes)
		case fResState:
			m.State = f.Bytes
		case fResChanged:
			m.StateChanged = f.Varint != 0
		case fResNotes:
			if len(m.Notifications) == 1 && cap(m.Notifications) == 1 {
				// A second one: room for all, as Request.Unmarshal does
				// for watchers; grown by append, a crowd's 1,000 were
				// reallocated ten times.
				m.Notifications = slices.Grow(m.Notifications, count(data, fResNotes)-1)
			}
			var n Notification
			var bodyOf uint64
			err := Fields(f.Bytes, func(f Field) error {
				switch f.Num {
				case fNotBodyOf:
					bodyOf = f.Varint
				case fNotWatcher:
					n.WatcherID = string(f.Bytes)
				case fNotType:
					n.ContentType = string(f.Bytes)
				case fNotBody:
					n.Body = f.Bytes
				case fNotPartial:
					n.Partial = f.Varint != 0
				case fNotState:
					n.State = f.Bytes
				case fNotChanged:
					n.StateChanged = f.Varint != 0
				case fNotStatus:
					n.Status = string(f.Bytes)
				case fNotReuse:
					n.ReuseUntilUnixNano = int64(f.Varint)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if bodyOf != 0 {
				if bodyOf > uint64(len(m.Notifications)) || n.ContentType != "" || n.Body != nil {
					return fmt.Errorf("notification %d: body_of %d names no earlier notification, or comes with a body", len(m.Notifications)+1, bodyOf)
				}
				c := &m.Notifications[bodyOf-1]
				n.ContentType, n.Body = c.ContentType, c.Body
			}
			if m.Notifications == nil {
				m.Notifications = make([]Notification, 0, 1)
			}
			m.Notifications = append(m.Notifications, n)
		}
		return nil
	})
}
