// Command echo is a test module: it stores the last published body and
// sends it to every watcher, and misbehaves on request so the host's
// failure handling can be tested ("bad" is refused, "panic" traps, "loop"
// never returns, "huge" writes past the output cap).
package main

import (
	"strings"

	"github.com/presenced/presenced/sdk"
)

type echo struct{}

func (echo) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	return sdk.Manifest{Packages: []sdk.Package{{Event: "echo", Accept: []string{"text/plain"}, DefaultExpires: 60}}}, nil
}

func (echo) Publish(r *sdk.Request) (*sdk.Response, error) {
	switch body := string(r.Publication.Body); body {
	case "bad":
		return nil, sdk.Reject(400, "bad body")
	case "panic":
		panic("boom")
	case "loop":
		for {
		}
	case "huge":
		return &sdk.Response{State: []byte(strings.Repeat("x", 20<<20)), StateChanged: true}, nil
	}
	return &sdk.Response{State: r.Publication.Body, StateChanged: true, Notifications: notes(r, r.Publication.Body)}, nil
}

func (echo) Unpublish(r *sdk.Request) (*sdk.Response, error) {
	return &sdk.Response{StateChanged: true, Notifications: notes(r, nil)}, nil
}

func (echo) Render(r *sdk.Request) (*sdk.Response, error) {
	return &sdk.Response{Notifications: notes(r, r.State)}, nil
}

func notes(r *sdk.Request, body []byte) []sdk.Notification {
	var ns []sdk.Notification
	for _, w := range r.Watchers {
		ns = append(ns, sdk.Notification{WatcherID: w.ID, ContentType: "text/plain", Body: body})
	}
	return ns
}

func init() { sdk.Register(echo{}) }

func main() {}
