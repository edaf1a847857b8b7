package pubstate

import (
	"strings"
	"testing"

	"github.com/presenced/presenced/sdk"
)

// module is a Handler as a module: Init is the module's own.
type module struct{ Handler }

func (module) Init(string, sdk.Config) (sdk.Manifest, error) { return sdk.Manifest{}, nil }

// Latest through sdk.Dispatch, as the wasm glue calls it: what watchers
// get is the most recent live publication, or Empty; a change that leaves
// it as it was notifies nobody; refusals change nothing.
func TestLatest(t *testing.T) {
	m := module{Latest("text/plain", []byte("none"), func(b []byte) error {
		if strings.Contains(string(b), "bad") {
			return sdk.Reject(400, "bad body")
		}
		return nil
	})}
	w := sdk.Watcher{ID: "w", Full: true}
	run := &latestRun{t: t, m: m, w: w}
	for i, c := range []struct {
		op       sdk.Op
		id, body string
		wantSent string
	}{
		{sdk.OpRender, "", "", "none"},
		{sdk.OpPublish, "p1", "one", "one"},
		{sdk.OpPublish, "p1", "one", "-"}, // a refresh
		{sdk.OpPublish, "p2", "two", "two"},
		{sdk.OpUnpublish, "p1", "", "-"}, // an older one goes
		{sdk.OpPublish, "p1", "one", "one"},
		{sdk.OpUnpublish, "p1", "", "two"}, // the latest goes: the one before
		{sdk.OpRender, "", "", "two"},
		{sdk.OpUnpublish, "p2", "", "none"},
	} {
		if got := run.do(c.op, c.id, "Text/Plain; charset=utf-8", c.body); got != c.wantSent {
			t.Fatalf("step %d, %s %s: sent %q, want %q", i, c.op, c.id, got, c.wantSent)
		}
	}
	for _, c := range []struct {
		req  *sdk.Request
		code uint32
	}{
		{&sdk.Request{Op: sdk.OpPublish, Publication: &sdk.Publication{ID: "p", ContentType: "text/html", Body: []byte("x")}, Watchers: []sdk.Watcher{w}}, 415},
		{&sdk.Request{Op: sdk.OpPublish, Publication: &sdk.Publication{ID: "p", ContentType: "text/plain", Body: []byte("bad")}, Watchers: []sdk.Watcher{w}}, 400},
		{&sdk.Request{Op: sdk.OpRender, Watchers: []sdk.Watcher{{ID: "v", Accept: []string{"application/xml"}}}}, 406},
	} {
		c.req.State = run.state
		res, err := sdk.Dispatch(m, c.req)
		if err != nil || res.Code != c.code || res.StateChanged || len(res.Notifications) != 0 {
			t.Errorf("want %d and nothing changed, got %+v %v", c.code, res, err)
		}
	}
	// a command's own id, beside the publications
	res, err := m.Change(&sdk.Request{State: run.state, Watchers: []sdk.Watcher{w}}, func(st *State) error {
		st.Push("operator", []byte("set"))
		return nil
	})
	if err != nil || len(res.Notifications) != 1 || string(res.Notifications[0].Body) != "set" {
		t.Fatalf("Change: %+v %v", res, err)
	}
}

// A render without Full, as the host asks once a change of a crowd's
// resource is answered or a coalescing window ends, sends a watcher only
// what differs from what its state says it was last sent.
func TestLatestRenderLeavesOutWhatWasSent(t *testing.T) {
	run := &latestRun{t: t, m: module{Latest("text/plain", []byte("none"), func([]byte) error { return nil })},
		w: sdk.Watcher{ID: "w"}, crowd: true}
	for i, c := range []struct {
		op       sdk.Op
		id, body string
		wantSent string
	}{
		{sdk.OpRender, "", "", "none"},
		{sdk.OpRender, "", "", "-"},
		{sdk.OpPublish, "p1", "one", "-"},
		{sdk.OpRender, "", "", "one"},
		{sdk.OpPublish, "p2", "two", "-"},
		{sdk.OpUnpublish, "p2", "", "-"}, // back to what w was sent
		{sdk.OpRender, "", "", "-"},
		{sdk.OpUnpublish, "p1", "", "-"},
		{sdk.OpRender, "", "", "none"},
	} {
		if got := run.do(c.op, c.id, "text/plain", c.body); got != c.wantSent {
			t.Fatalf("step %d, %s %s: sent %q, want %q", i, c.op, c.id, got, c.wantSent)
		}
	}
}

// latestRun drives a Latest module as the host does: one resource, one
// watcher w, whose state it keeps from what w was sent.
type latestRun struct {
	t     *testing.T
	m     module
	state []byte
	w     sdk.Watcher
	// crowd proposes a publication's change without watchers, as the
	// host does for a resource with many: they get a render after it.
	crowd bool
}

// do runs one op and returns the body w was sent, "-" for none.
func (l *latestRun) do(op sdk.Op, id, ctype, body string) string {
	l.t.Helper()
	req := &sdk.Request{Op: op, Event: "x", Resource: "sip:a@example.com", State: l.state, Watchers: []sdk.Watcher{l.w}}
	if op != sdk.OpRender {
		req.Publication = &sdk.Publication{ID: id, ContentType: ctype, Body: []byte(body)}
		if l.crowd {
			req.Watchers = nil
		}
	}
	res, err := sdk.Dispatch(l.m, req)
	if err != nil || res.Code != 0 {
		l.t.Fatalf("%s %s: %+v %v", op, id, res, err)
	}
	if res.StateChanged {
		l.state = res.State
	}
	if len(res.Notifications) == 0 {
		return "-"
	}
	n := res.Notifications[0]
	if len(res.Notifications) != 1 || n.WatcherID != "w" || n.ContentType != "text/plain" || !n.StateChanged || len(n.State) == 0 {
		l.t.Fatalf("%s %s: notifications %+v", op, id, res.Notifications)
	}
	l.w.State = n.State
	return string(n.Body)
}

// Handler for a package that composes every publication: the state is
// returned only when its encoding changed, Notify sees the state before
// (nil for a render), a refused publication changes nothing, and a call
// without watchers asks Notify nothing.
func TestHandler(t *testing.T) {
	var befores []string
	m := module{Handler{ContentType: "text/plain",
		Fold: func(req *sdk.Request, st *State) error {
			if len(req.Publication.Body) == 0 {
				return sdk.Reject(400, "empty")
			}
			st.Put(req.Publication.ID, req.Publication.Body)
			return nil
		},
		Notify: func(req *sdk.Request, before, st *State) ([]sdk.Notification, error) {
			b := "nil"
			if before != nil {
				b = ids(before)
			}
			befores = append(befores, b)
			return []sdk.Notification{{WatcherID: req.Watchers[0].ID, Body: []byte(ids(st))}}, nil
		}}}
	ws := []sdk.Watcher{{ID: "w"}}
	var state []byte
	for i, c := range []struct {
		req          *sdk.Request
		changed      bool
		sent, before string
	}{
		{&sdk.Request{Op: sdk.OpPublish, Publication: &sdk.Publication{ID: "a", ContentType: "text/plain", Body: []byte("1")}, Watchers: ws}, true, "a=1", ""},
		{&sdk.Request{Op: sdk.OpPublish, Publication: &sdk.Publication{ID: "b", ContentType: "text/plain", Body: []byte("2")}, Watchers: ws}, true, "a=1 b=2", "a=1"},
		{&sdk.Request{Op: sdk.OpPublish, Publication: &sdk.Publication{ID: "a", ContentType: "text/plain", Body: []byte("1")}, Watchers: ws}, false, "a=1 b=2", "a=1 b=2"},
		{&sdk.Request{Op: sdk.OpUnpublish, Publication: &sdk.Publication{ID: "x"}, Watchers: ws}, false, "a=1 b=2", "a=1 b=2"},
		{&sdk.Request{Op: sdk.OpRender, Watchers: ws}, false, "a=1 b=2", "nil"},
		{&sdk.Request{Op: sdk.OpUnpublish, Publication: &sdk.Publication{ID: "a"}}, true, "", ""},
	} {
		c.req.State = state
		befores = nil
		res, err := sdk.Dispatch(m, c.req)
		if err != nil || res.Code != 0 || res.StateChanged != c.changed {
			t.Fatalf("step %d: %+v %v", i, res, err)
		}
		if res.StateChanged {
			state = res.State
		}
		sent := ""
		if len(res.Notifications) > 0 {
			sent = string(res.Notifications[0].Body)
		}
		if sent != c.sent || strings.Join(befores, ",") != c.before {
			t.Fatalf("step %d: sent %q, before %q; want %q, %q", i, sent, befores, c.sent, c.before)
		}
	}
	if st, _ := Decode(state); ids(st) != "b=2" {
		t.Fatalf("state %q", ids(st))
	}
	res, err := sdk.Dispatch(m, &sdk.Request{Op: sdk.OpPublish, State: state, Publication: &sdk.Publication{ID: "c", ContentType: "text/plain"}, Watchers: ws})
	if err != nil || res.Code != 400 || res.StateChanged || len(res.Notifications) != 0 {
		t.Fatalf("refused: %+v %v", res, err)
	}
}
