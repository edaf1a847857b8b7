package pubstate

import (
	"strings"
	"testing"

	"github.com/presenced/presenced/sdk"
)

// latestModule is Latest as a module: Init is the module's own.
type latestModule struct{ Latest }

func (latestModule) Init(string, sdk.Config) (sdk.Manifest, error) { return sdk.Manifest{}, nil }

// Latest through sdk.Dispatch, as the wasm glue calls it: what watchers
// get is the most recent live publication, or Empty; a change that leaves
// it as it was notifies nobody; refusals change nothing.
func TestLatest(t *testing.T) {
	m := latestModule{Latest{ContentType: "text/plain", Empty: []byte("none"),
		Check: func(b []byte) error {
			if strings.Contains(string(b), "bad") {
				return sdk.Reject(400, "bad body")
			}
			return nil
		}}}
	w := sdk.Watcher{ID: "w", Full: true}
	var state []byte
	// do runs one op and returns the body every watcher was sent, "-" for
	// no notification, and keeps the new state.
	do := func(op sdk.Op, id, ctype, body string) string {
		t.Helper()
		req := &sdk.Request{Op: op, Event: "x", Resource: "sip:a@example.com", State: state, Watchers: []sdk.Watcher{w}}
		if op != sdk.OpRender {
			req.Publication = &sdk.Publication{ID: id, ContentType: ctype, Body: []byte(body)}
		}
		res, err := sdk.Dispatch(m, req)
		if err != nil || res.Code != 0 {
			t.Fatalf("%s %s: %+v %v", op, id, res, err)
		}
		if op != sdk.OpRender {
			state = res.State
		}
		if len(res.Notifications) == 0 {
			return "-"
		}
		if n := res.Notifications[0]; len(res.Notifications) != 1 || n.WatcherID != "w" || n.ContentType != "text/plain" {
			t.Fatalf("%s %s: notifications %+v", op, id, res.Notifications)
		}
		return string(res.Notifications[0].Body)
	}
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
		if got := do(c.op, c.id, "Text/Plain; charset=utf-8", c.body); got != c.wantSent {
			t.Fatalf("step %d, %s %s: sent %q, want %q", i, c.op, c.id, got, c.wantSent)
		}
	}
	for _, c := range []struct {
		req  *sdk.Request
		code uint32
	}{
		{&sdk.Request{Op: sdk.OpPublish, State: state, Publication: &sdk.Publication{ID: "p", ContentType: "text/html", Body: []byte("x")}, Watchers: []sdk.Watcher{w}}, 415},
		{&sdk.Request{Op: sdk.OpPublish, State: state, Publication: &sdk.Publication{ID: "p", ContentType: "text/plain", Body: []byte("bad")}, Watchers: []sdk.Watcher{w}}, 400},
		{&sdk.Request{Op: sdk.OpRender, State: state, Watchers: []sdk.Watcher{{ID: "v", Accept: []string{"application/xml"}}}}, 406},
	} {
		res, err := sdk.Dispatch(m, c.req)
		if err != nil || res.Code != c.code || res.StateChanged || len(res.Notifications) != 0 {
			t.Errorf("want %d and nothing changed, got %+v %v", c.code, res, err)
		}
	}
	// a command's own id, beside the publications
	res, err := m.Change(&sdk.Request{State: state, Watchers: []sdk.Watcher{w}}, func(st *State) { st.Push("operator", []byte("set")) })
	if err != nil || len(res.Notifications) != 1 || string(res.Notifications[0].Body) != "set" {
		t.Fatalf("Change: %+v %v", res, err)
	}
}
