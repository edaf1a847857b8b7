// Command guest is the kit's own test module: it keeps the last published
// body and sends it to every watcher, refusing the body "bad", and breaks
// one rule of ABI.md when its config key "break" says which, so the kit's
// test can see each check fail.
package main

import (
	"errors"
	"math"
	"strconv"

	"github.com/presenced/presenced/sdk"
)

type guest struct{ broken string }

// calls counts this instance's calls: what a module must not let into
// its output.
var calls int

func (g *guest) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	g.broken = cfg["break"]
	event := "guest"
	if g.broken == "event-name" {
		event = "two words"
	}
	return sdk.Manifest{Packages: []sdk.Package{{Event: event, Accept: []string{"text/plain"}}}}, nil
}

func (g *guest) Publish(r *sdk.Request) (*sdk.Response, error) {
	if string(r.Publication.Body) == "bad" {
		if g.broken == "refusal-fails" {
			return nil, errors.New("bad body")
		}
		return nil, sdk.Reject(400, "bad body")
	}
	return &sdk.Response{State: r.Publication.Body, StateChanged: true, Notifications: g.notes(r, r.Publication.Body)}, nil
}

func (g *guest) Unpublish(r *sdk.Request) (*sdk.Response, error) {
	return &sdk.Response{StateChanged: true, Notifications: g.notes(r, nil)}, nil
}

func (g *guest) Render(r *sdk.Request) (*sdk.Response, error) {
	res := &sdk.Response{Notifications: g.notes(r, r.State)}
	if g.broken == "render-changes-state" {
		res.StateChanged = true
	}
	for i := range res.Notifications {
		// Every watcher gets the state: the rendering is anyone's.
		res.Notifications[i].ReuseUntilUnixNano = math.MaxInt64
		if g.broken == "reuse-by-uri" {
			res.Notifications[i].Body = append(res.Notifications[i].Body, r.Watchers[i].URI...)
		}
	}
	return res, nil
}

func (g *guest) notes(r *sdk.Request, body []byte) []sdk.Notification {
	calls++
	if g.broken == "keeps-calls" {
		body = append(body, strconv.Itoa(calls)...)
	}
	var ns []sdk.Notification
	for _, w := range r.Watchers {
		ns = append(ns, sdk.Notification{WatcherID: w.ID, ContentType: "text/plain", Body: body})
	}
	return ns
}

func init() { sdk.Register(&guest{}) }

func main() {}
