package main

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/xmldoc"
	"google.golang.org/protobuf/encoding/protowire"
)

// The presence.winfo package (RFC 3857): who watches a presentity, sent to
// the presentity as watcherinfo documents (RFC 3858). Its input is the
// host's OpWatcherEvent for each change of a presence subscription; its
// state, separate from the presence state, is the live watchers.

const (
	winfoEvent = "presence.winfo"
	winfoType  = "application/watcherinfo+xml"
	nsWinfo    = "urn:ietf:params:xml:ns:watcherinfo"
)

// The winfo state blob and the per-subscription state, protobuf wire
// format like the rest; the numbers never change:
//
//	message Winfo   { repeated Watcher watchers = 1; }
//	message Watcher { string id = 1; string uri = 2; string status = 3; string event = 4;
//	                  int64 duration = 5; int64 expires = 6; int64 at = 7; }
//	message Sub     { uint64 sent = 1; }  // documents sent: sdk.NextVersion's
//
// at is the host's clock (Unix seconds) when duration and expires were
// given, so a later full document can age them.
const (
	fWinfoWatcher = 1
	fWevID        = 1
	fWevURI       = 2
	fWevStatus    = 3
	fWevEvent     = 4
	fWevDuration  = 5
	fWevExpires   = 6
	fWevAt        = 7
)

type winfoWatcher struct {
	ID, URI, Status, Event string
	Duration, Expires, At  int64
}

func decodeWinfo(b []byte) ([]winfoWatcher, error) {
	var out []winfoWatcher
	err := abi.Fields(b, func(f abi.Field) error {
		if !f.IsBytes(fWinfoWatcher) {
			return nil
		}
		w, err := decodeWinfoWatcher(f.Bytes)
		if err != nil {
			return fmt.Errorf("watcher %d: %w", len(out)+1, err)
		}
		out = append(out, w)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode winfo state: %w", err)
	}
	return out, nil
}

func decodeWinfoWatcher(b []byte) (winfoWatcher, error) {
	var w winfoWatcher
	err := abi.Fields(b, func(f abi.Field) error {
		switch {
		case f.IsBytes(fWevID):
			w.ID = string(f.Bytes)
		case f.IsBytes(fWevURI):
			w.URI = string(f.Bytes)
		case f.IsBytes(fWevStatus):
			w.Status = string(f.Bytes)
		case f.IsBytes(fWevEvent):
			w.Event = string(f.Bytes)
		case f.IsVarint(fWevDuration):
			w.Duration = int64(f.Varint)
		case f.IsVarint(fWevExpires):
			w.Expires = int64(f.Varint)
		case f.IsVarint(fWevAt):
			w.At = int64(f.Varint)
		}
		return nil
	})
	return w, err
}

func encodeWinfo(ws []winfoWatcher) []byte {
	var b []byte
	for _, w := range ws {
		var v []byte
		for i, s := range []string{w.ID, w.URI, w.Status, w.Event} {
			v = protowire.AppendTag(v, protowire.Number(fWevID+i), protowire.BytesType)
			v = protowire.AppendString(v, s)
		}
		for i, n := range []int64{w.Duration, w.Expires, w.At} {
			v = protowire.AppendTag(v, protowire.Number(fWevDuration+i), protowire.VarintType)
			v = protowire.AppendVarint(v, uint64(n))
		}
		b = protowire.AppendTag(b, fWinfoWatcher, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	return b
}

// winfo is the presence.winfo package's sdk.Handler.
type winfo struct{}

func (winfo) Publish(*sdk.Request) (*sdk.Response, error) {
	return nil, sdk.Reject(489, "%s takes no publications", winfoEvent)
}

// Unpublish, Binding and XMPP change presence, not who watches it.
func (winfo) Unpublish(*sdk.Request) (*sdk.Response, error) { return &sdk.Response{}, nil }
func (winfo) Binding(*sdk.Request) (*sdk.Response, error)   { return &sdk.Response{}, nil }
func (winfo) XMPP(*sdk.Request) (*sdk.Response, error)      { return &sdk.Response{}, nil }

func (winfo) Command(req *sdk.Request) (*sdk.Response, error) {
	return nil, sdk.Reject(400, "%s has no commands; send %q to %s", winfoEvent, req.Command.Name, presenceEvent)
}

// Render sends every winfo subscriber (only ever the presentity) the full
// list.
func (winfo) Render(req *sdk.Request) (*sdk.Response, error) {
	for _, w := range req.Watchers {
		if !sdk.SameResource(w.URI, req.Resource) {
			return nil, sdk.Reject(403, "only the presentity may watch its watchers")
		}
	}
	if err := sdk.CheckAccept(req.Watchers, winfoType); err != nil {
		return nil, err
	}
	ws, err := decodeWinfo(req.State)
	if err != nil {
		return nil, err
	}
	res := &sdk.Response{}
	for _, w := range req.Watchers {
		res.Notifications = append(res.Notifications, winfoNotify(req, w, ws, true))
	}
	return res, nil
}

// WatcherEvent folds a change of one presence subscription into the list
// and sends each winfo subscriber a partial document with that watcher
// alone (a full one to a subscriber that needs it). A terminated watcher
// is in that document and then gone.
func (winfo) WatcherEvent(req *sdk.Request) (*sdk.Response, error) {
	ev := req.WatcherEvent
	if ev == nil {
		return nil, fmt.Errorf("watcher event without a WatcherEvent")
	}
	ws, err := decodeWinfo(req.State)
	if err != nil {
		return nil, err
	}
	w := winfoWatcher{ID: ev.ID, URI: ev.URI, Status: ev.Status, Event: ev.Event,
		Duration: ev.Duration, Expires: ev.Expires, At: req.NowUnixNano / 1e9}
	i := slices.IndexFunc(ws, func(x winfoWatcher) bool { return x.ID == ev.ID })
	switch {
	case ev.Status == sdk.StatusTerminated && i >= 0:
		ws = slices.Delete(ws, i, i+1)
	case ev.Status == sdk.StatusTerminated:
	case i >= 0:
		ws[i] = w
	default:
		ws = append(ws, w)
	}
	res := &sdk.Response{State: encodeWinfo(ws)}
	res.StateChanged = string(res.State) != string(req.State)
	for _, sub := range req.Watchers {
		if sub.Full {
			res.Notifications = append(res.Notifications, winfoNotify(req, sub, ws, true))
		} else {
			res.Notifications = append(res.Notifications, winfoNotify(req, sub, []winfoWatcher{w}, false))
		}
	}
	return res, nil
}

func winfoNotify(req *sdk.Request, sub sdk.Watcher, ws []winfoWatcher, full bool) sdk.Notification {
	v, next := sdk.NextVersion(sub.State, sdk.VersionStartWatcherInfo)
	return sdk.Notification{
		WatcherID: sub.ID, ContentType: winfoType, Partial: !full,
		Body:  watcherinfo(req.Resource, v, full, ws, req.NowUnixNano/1e9),
		State: next, StateChanged: true,
	}
}

// watcherinfo writes an RFC 3858 document. now ages the durations and
// expiries stored with each watcher (0: as stored).
func watcherinfo(resource string, version uint64, full bool, ws []winfoWatcher, now int64) []byte {
	state := "partial"
	if full {
		state = "full"
	}
	w := xmldoc.NewWriter()
	w.Start(nsWinfo, "watcherinfo", xmldoc.A("version", strconv.FormatUint(version, 10)), xmldoc.A("state", state))
	w.Text("\n")
	w.Start(nsWinfo, "watcher-list", xmldoc.A("resource", resource), xmldoc.A("package", "presence"))
	w.Text("\n")
	for _, wt := range ws {
		age := int64(0)
		if now > 0 && wt.At > 0 && now > wt.At {
			age = now - wt.At
		}
		attrs := []xmldoc.NodeAttr{xmldoc.A("id", wt.ID), xmldoc.A("event", wt.Event), xmldoc.A("status", wt.Status),
			xmldoc.A("duration-subscribed", strconv.FormatInt(max(wt.Duration+age, 0), 10))}
		if wt.Status != sdk.StatusTerminated {
			attrs = append(attrs, xmldoc.A("expiration", strconv.FormatInt(max(wt.Expires-age, 0), 10)))
		}
		w.Start(nsWinfo, "watcher", attrs...)
		w.Text(wt.URI)
		w.End()
		w.Text("\n")
	}
	w.End()
	w.Text("\n")
	w.End()
	w.Text("\n")
	return w.Bytes()
}
