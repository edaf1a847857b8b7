package abi

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// walk returns what Fields hands over, one "num:type=value" per field.
func walk(t *testing.T, b []byte) ([]string, error) {
	t.Helper()
	var got []string
	err := Fields(b, func(f Field) error {
		switch f.Type {
		case protowire.VarintType:
			got = append(got, fmt.Sprintf("%d:varint=%d", f.Num, f.Varint))
		case protowire.BytesType:
			got = append(got, fmt.Sprintf("%d:bytes=%q", f.Num, f.Bytes))
		default:
			t.Errorf("field %d handed over with wire type %d", f.Num, f.Type)
		}
		return nil
	})
	return got, err
}

func TestFieldsSkipsOtherWireTypes(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 300)
	b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 7)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, "abc")
	b = protowire.AppendTag(b, 4, protowire.StartGroupType)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 9)
	b = protowire.AppendTag(b, 4, protowire.EndGroupType)
	b = protowire.AppendTag(b, 5, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 8)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, nil)
	got, err := walk(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(got, " "); s != `1:varint=300 3:bytes="abc" 3:bytes=""` {
		t.Fatalf("fields = %s", s)
	}
}

func TestFieldsErrors(t *testing.T) {
	tests := []struct {
		b    []byte
		want string
	}{
		{[]byte{0x80}, "bad tag: "},                   // the tag's varint is cut
		{[]byte{0x00}, "bad tag: "},                   // field number 0
		{[]byte{0x0a, 0x05, 'a'}, "field 1: "},        // bytes longer than the message
		{[]byte{0x10}, "field 2: "},                   // varint missing
		{[]byte{0x1d, 0x01}, "field 3: "},             // fixed32 cut
		{[]byte{0x24}, "field 4: "},                   // end group with no start
		{[]byte{0x08, 0x01, 0x12, 0x01}, "field 2: "}, // a good field, then a cut one
	}
	for _, tt := range tests {
		if _, err := walk(t, tt.b); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("% x: err = %v, want %q...", tt.b, err, tt.want)
		}
	}
}

func TestFieldsStopsAtCallbackError(t *testing.T) {
	stop := errors.New("stop")
	var b []byte
	for i := range 3 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(i))
	}
	calls := 0
	err := Fields(b, func(f Field) error {
		calls++
		if f.Varint == 1 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 2 {
		t.Fatalf("err = %v after %d calls, want the callback's error after 2", err, calls)
	}
}

func TestFieldIs(t *testing.T) {
	v := Field{Num: 2, Type: protowire.VarintType}
	b := Field{Num: 2, Type: protowire.BytesType}
	if !v.IsVarint(2) || v.IsBytes(2) || v.IsVarint(3) || !b.IsBytes(2) || b.IsVarint(2) || b.IsBytes(1) {
		t.Fatal("IsVarint/IsBytes disagree with Num and Type")
	}
}
