package abi

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field is one varint or length-delimited field of a protobuf message, as
// Fields hands it over. The ABI's messages use no other wire types, and
// neither do the state blobs of the modules in this repository.
type Field struct {
	Num  protowire.Number
	Type protowire.Type // protowire.VarintType or protowire.BytesType
	// Varint is a varint field's value; 0 for a length-delimited field.
	Varint uint64
	// Bytes is a length-delimited field's value, aliasing the message; nil
	// for a varint field.
	Bytes []byte
}

// IsBytes reports whether f is field num, length-delimited. A decoder that
// reads a field only in the wire type it writes it with skips a field of
// another type, as protobuf does, rather than reading it as zero.
func (f Field) IsBytes(num protowire.Number) bool {
	return f.Num == num && f.Type == protowire.BytesType
}

// IsVarint reports whether f is field num, a varint.
func (f Field) IsVarint(num protowire.Number) bool {
	return f.Num == num && f.Type == protowire.VarintType
}

// Fields walks the protobuf message b and calls f for each varint and
// length-delimited field, in order. Fields of other wire types (fixed32,
// fixed64, groups) are checked and skipped, as a reader must skip what it
// does not know. It stops at the first error f returns and returns it as
// is; a malformed message is an error naming the field it broke in.
//
// It is the one decode loop of the codec in this package, exported for a
// module's own state blobs, which are protobuf wire format too.
func Fields(b []byte, f func(Field) error) error {
	for len(b) > 0 {
		// A tag, a varint or a length under 128 is one byte: read inline,
		// where protowire's general readers are calls, which a Go guest
		// pays for at each field of each watcher of a crowd
		// (RATIONALE.md). Anything else, and any error, takes protowire's
		// path.
		var num protowire.Number
		var typ protowire.Type
		n := 1
		if c := b[0]; c < 0x80 && c>>3 != 0 {
			num, typ = protowire.Number(c>>3), protowire.Type(c&7)
		} else if num, typ, n = protowire.ConsumeTag(b); n < 0 {
			return fmt.Errorf("bad tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		fl := Field{Num: num, Type: typ}
		switch {
		case typ == protowire.VarintType && len(b) > 0 && b[0] < 0x80:
			fl.Varint, n = uint64(b[0]), 1
		case typ == protowire.BytesType && len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b):
			n = 1 + int(b[0])
			fl.Bytes = b[1:n] // capacity past it, as protowire leaves it: strtab.str relies on it
		case typ == protowire.VarintType:
			fl.Varint, n = protowire.ConsumeVarint(b)
		case typ == protowire.BytesType:
			fl.Bytes, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.VarintType || typ == protowire.BytesType {
			if err := f(fl); err != nil {
				return err
			}
		}
	}
	return nil
}
