package pubstate

import (
	"bytes"
	"testing"
)

func FuzzDecode(f *testing.F) {
	s := &State{}
	s.Put("a", []byte("one"))
	s.Put("b", nil)
	s.Push("c", []byte{0, 1, 2})
	f.Add(s.Encode())
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Add([]byte{0x0a, 0x05, 0x0a, 0x01, 'x', 0x12, 0x00, 0x10, 0x01})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := Decode(data)
		if err != nil {
			return
		}
		once := st.Encode()
		st2, err := Decode(once)
		if err != nil {
			t.Fatalf("Decode of Encode's output: %v\nin:  %x\nout: %x", err, data, once)
		}
		if len(st2.Pubs) != len(st.Pubs) {
			t.Fatalf("%d publications became %d", len(st.Pubs), len(st2.Pubs))
		}
		for i := range st.Pubs {
			if st.Pubs[i].ID != st2.Pubs[i].ID || !bytes.Equal(st.Pubs[i].Body, st2.Pubs[i].Body) {
				t.Fatalf("publication %d: %+v became %+v", i, st.Pubs[i], st2.Pubs[i])
			}
		}
		if twice := st2.Encode(); !bytes.Equal(once, twice) {
			t.Fatalf("Encode not stable: %x then %x", once, twice)
		}
	})
}
