package sdk

import (
	"errors"
	"strings"
	"testing"
)

// stub answers every op with its own name in Reason, so a test sees which
// handler ran.
type stub string

func (s stub) answer(op string) (*Response, error) {
	return &Response{Reason: string(s) + " " + op}, nil
}

func (s stub) Publish(*Request) (*Response, error)   { return s.answer("publish") }
func (s stub) Unpublish(*Request) (*Response, error) { return s.answer("unpublish") }
func (s stub) Render(*Request) (*Response, error)    { return s.answer("render") }

// watched is a stub that takes watcher events too.
type watched struct{ stub }

func (w watched) WatcherEvent(*Request) (*Response, error) { return w.answer("watcher-event") }

func newMux(events ...string) *Mux {
	m := NewMux(func(string, Config) (Manifest, error) {
		var man Manifest
		for _, e := range events {
			man.Packages = append(man.Packages, Package{Event: e})
		}
		return man, nil
	})
	m.Handle("a", stub("a"))
	m.Handle("a.winfo", watched{stub("a.winfo")})
	return m
}

func TestMuxRoutes(t *testing.T) {
	m := newMux("a", "a.winfo")
	if _, err := m.Init("x", nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		op    Op
		event string
		want  string
	}{
		{OpPublish, "a", "a publish"},
		{OpRender, "a.winfo", "a.winfo render"},
		{OpUnpublish, "a.winfo", "a.winfo unpublish"},
		{OpWatcherEvent, "a.winfo", "a.winfo watcher-event"},
	} {
		res, err := Dispatch(m, &Request{Op: c.op, Event: c.event, Publication: &Publication{ID: "p"}})
		if err != nil || res.Reason != c.want {
			t.Errorf("%s %s: %+v, %v; want %q", c.op, c.event, res, err, c.want)
		}
	}
	// An op the package's handler lacks is unsupported, even though
	// another package's handler has it.
	if _, err := Dispatch(m, &Request{Op: OpWatcherEvent, Event: "a"}); !errors.Is(err, errUnsupported) {
		t.Errorf("watcher event for a: %v, want unsupported", err)
	}
	res, err := Dispatch(m, &Request{Op: OpRender, Event: "b"})
	if err != nil || res.Code != 489 {
		t.Errorf("render for b: %+v, %v; want a 489 refusal", res, err)
	}
}

func TestMuxInitChecksPackages(t *testing.T) {
	if _, err := newMux("a").Init("x", nil); err == nil || !strings.Contains(err.Error(), `"a.winfo" has a handler but is not in the manifest`) {
		t.Errorf("handler without package: %v", err)
	}
	if _, err := newMux("a", "a.winfo", "c").Init("x", nil); err == nil || !strings.Contains(err.Error(), `package "c", which has no handler`) {
		t.Errorf("package without handler: %v", err)
	}
}
