package pubstate

import (
	"bytes"
	"slices"

	"github.com/presenced/presenced/sdk"
)

// Handler is an sdk.Handler for an event package whose state is State,
// the live publications of a resource, so that the module writes only
// what is its own: how a publication goes into the state (Fold) and what
// each watcher is sent of it (Notify). For every op it decodes req.State,
// changes it (Fold for a publication, Remove for an unpublish, nothing
// for a render), returns the new state when its encoding changed, and
// asks Notify what to send. A module embeds it, setting the fields in
// init, and adds Init and its commands.
type Handler struct {
	// ContentType is the one media type published and sent: a PUBLISH of
	// another is refused with 415, a render for a watcher that accepts
	// none of it with 406.
	ContentType string
	// Fold checks req.Publication and puts it into st (Put, Push, or a
	// form of the body the module reads back faster); refuse it with
	// sdk.Reject, which leaves the state as it was.
	Fold func(req *sdk.Request, st *State) error
	// Notify is what req.Watchers are sent of st. before is the state the
	// call found, for a package that sends nothing when what watchers see
	// did not change; it is nil for a render, which sends every watcher
	// given what it sees.
	Notify func(req *sdk.Request, before, st *State) ([]sdk.Notification, error)
}

// Publish folds the publication into the state.
func (h Handler) Publish(req *sdk.Request) (*sdk.Response, error) {
	if err := sdk.CheckContentType(req.Publication.ContentType, h.ContentType); err != nil {
		return nil, err
	}
	return h.Change(req, func(st *State) error { return h.Fold(req, st) })
}

// Unpublish drops the publication from the state.
func (h Handler) Unpublish(req *sdk.Request) (*sdk.Response, error) {
	return h.Change(req, func(st *State) error { st.Remove(req.Publication.ID); return nil })
}

// Render sends the watchers given what they see of the state.
func (h Handler) Render(req *sdk.Request) (*sdk.Response, error) {
	if err := sdk.CheckAccept(req.Watchers, h.ContentType); err != nil {
		return nil, err
	}
	st, err := Decode(req.State)
	if err != nil {
		return nil, err
	}
	return h.respond(req, nil, st)
}

// Change applies edit to the state and responds as to a publication: what
// a command that changes the state calls (one that sets what watchers get
// Pushes under an id of its own, beside the host's publications).
func (h Handler) Change(req *sdk.Request, edit func(*State) error) (*sdk.Response, error) {
	st, err := Decode(req.State)
	if err != nil {
		return nil, err
	}
	before := &State{Pubs: slices.Clone(st.Pubs)}
	if err := edit(st); err != nil {
		return nil, err
	}
	return h.respond(req, before, st)
}

func (h Handler) respond(req *sdk.Request, before, st *State) (*sdk.Response, error) {
	res := &sdk.Response{}
	if before != nil {
		if enc := st.Encode(); !bytes.Equal(enc, req.State) {
			res.State, res.StateChanged = enc, true
		}
	}
	if len(req.Watchers) == 0 {
		return res, nil
	}
	ns, err := h.Notify(req, before, st)
	if err != nil {
		return nil, err
	}
	res.Notifications = ns
	return res, nil
}

var _ sdk.Handler = Handler{}

// Latest returns the Handler of an event package whose watchers all get
// the most recent live publication of a resource, byte for byte as
// published (RFC 3842's message-summary is one): a PUBLISH whose body
// check takes makes it the latest, the removal or expiry of the latest
// brings back the one before it, and a change that leaves the latest as
// it was (a refresh, the removal of an older one) notifies nobody: each
// watcher's state keeps the digest of the body it was last sent, which a
// render (sdk.OpRender without Full) compares, as ABI.md §6 lets a module. Several
// sources of one resource are not composed: the last one to speak wins.
// While nothing is published, watchers get empty.
func Latest(contentType string, empty []byte, check func(body []byte) error) Handler {
	latest := func(st *State) []byte {
		if p, ok := st.Latest(); ok {
			return p.Body
		}
		return empty
	}
	return Handler{
		ContentType: contentType,
		Fold: func(req *sdk.Request, st *State) error {
			if err := check(req.Publication.Body); err != nil {
				return err
			}
			st.Push(req.Publication.ID, req.Publication.Body)
			return nil
		},
		Notify: func(req *sdk.Request, before, st *State) ([]sdk.Notification, error) {
			body := latest(st)
			if before != nil && bytes.Equal(latest(before), body) {
				return nil, nil
			}
			// A render (before nil: a crowd's rendering, a coalescing
			// window's end) leaves out the watchers whose state holds the
			// digest of this body: they were sent it already.
			digest := sdk.Digest(body)
			var ns []sdk.Notification
			for _, w := range req.Watchers {
				_, state, send := sdk.NextDocument(w, 0, digest)
				if !send {
					continue
				}
				ns = append(ns, sdk.Notification{WatcherID: w.ID, ContentType: contentType, Body: body,
					State: state, StateChanged: true})
			}
			return ns, nil
		},
	}
}
