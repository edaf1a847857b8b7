package sdk

import (
	"strings"
	"testing"
)

// A request without the input its op is about fails before any handler
// runs, so that no handler checks for it.
func TestDispatchChecksInput(t *testing.T) {
	m := NewMux(func(string, Config) (Manifest, error) { return Manifest{}, nil })
	m.Handle("a", stub("a"))
	for _, c := range []struct {
		req  *Request
		want string
	}{
		{&Request{Op: OpPublish, Event: "a"}, "without a publication"},
		{&Request{Op: OpUnpublish, Event: "a"}, "without a publication"},
		{&Request{Op: OpCommand, Event: "a"}, "without a command"},
		{&Request{Op: OpBinding, Event: "a"}, "without a binding"},
		{&Request{Op: OpXMPP, Event: "a"}, "without a presence"},
	} {
		if res, err := Dispatch(m, c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %+v, %v; want an error saying %q", c.req.Op, res, err, c.want)
		}
	}
	if res, err := Dispatch(m, &Request{Op: OpUnpublish, Event: "a", Publication: &Publication{ID: "p"}}); err != nil || res.Reason != "a unpublish" {
		t.Errorf("with its publication: %+v, %v", res, err)
	}
}
