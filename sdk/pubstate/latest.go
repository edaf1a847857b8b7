package pubstate

import "github.com/presenced/presenced/sdk"

// Latest is a ready-made sdk.Handler for an event package whose watchers
// all get the most recent live publication of a resource, byte for byte
// as published (RFC 3842's message-summary is one): a PUBLISH makes its
// body the latest, the removal or expiry of the latest brings back the
// one before it, and a change that leaves the latest as it was (a
// refresh, the removal of an older one) notifies nobody. Several sources
// of one resource are not composed: the last one to speak wins. A module
// embeds it and adds Init and its commands.
type Latest struct {
	// ContentType is the one media type published and sent: a PUBLISH of
	// another is refused with 415, a watcher that accepts none of it
	// with 406.
	ContentType string
	// Check refuses a body watchers must not get, with sdk.Reject; nil
	// takes any body.
	Check func(body []byte) error
	// Empty is what watchers get while nothing is published.
	Empty []byte
}

// Publish checks the body and makes it the latest.
func (l Latest) Publish(req *sdk.Request) (*sdk.Response, error) {
	p := req.Publication
	if err := sdk.CheckContentType(p.ContentType, l.ContentType); err != nil {
		return nil, err
	}
	if l.Check != nil {
		if err := l.Check(p.Body); err != nil {
			return nil, err
		}
	}
	return l.Change(req, func(st *State) { st.Push(p.ID, p.Body) })
}

// Unpublish drops the publication; the one before it is the latest.
func (l Latest) Unpublish(req *sdk.Request) (*sdk.Response, error) {
	return l.Change(req, func(st *State) { st.Remove(req.Publication.ID) })
}

// Render sends every watcher given the latest body.
func (l Latest) Render(req *sdk.Request) (*sdk.Response, error) {
	if err := sdk.CheckAccept(req.Watchers, l.ContentType); err != nil {
		return nil, err
	}
	st, err := Decode(req.State)
	if err != nil {
		return nil, err
	}
	return l.notify(&sdk.Response{}, req, l.latest(st)), nil
}

// Change applies edit to the resource's publications, and sends every
// watcher given the latest body when it is not the one before. A command
// that sets what watchers get calls it, and Pushes under an id of its own
// beside the host's publications.
func (l Latest) Change(req *sdk.Request, edit func(*State)) (*sdk.Response, error) {
	st, err := Decode(req.State)
	if err != nil {
		return nil, err
	}
	before := l.latest(st)
	edit(st)
	res := &sdk.Response{State: st.Encode(), StateChanged: true}
	if after := l.latest(st); string(after) != string(before) {
		l.notify(res, req, after)
	}
	return res, nil
}

func (l Latest) latest(st *State) []byte {
	if p, ok := st.Latest(); ok {
		return p.Body
	}
	return l.Empty
}

func (l Latest) notify(res *sdk.Response, req *sdk.Request, body []byte) *sdk.Response {
	for _, w := range req.Watchers {
		res.Notifications = append(res.Notifications, sdk.Notification{WatcherID: w.ID, ContentType: l.ContentType, Body: body})
	}
	return res
}

var _ sdk.Handler = Latest{}
