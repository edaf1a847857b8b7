// Command shout is a test module that serves the same "echo" package as
// testdata/echo but sends every body in upper case: swapping one for the
// other shows which module a NOTIFY came from (hot reload tests). It reads
// the state echo left: state is the host's, not the module's.
package main

import (
	"bytes"

	"github.com/presenced/presenced/sdk"
)

type shout struct{}

func (shout) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	return sdk.Manifest{Packages: []sdk.Package{{Event: "echo", Accept: []string{"text/plain"}, DefaultExpires: 60}}}, nil
}

func (shout) Publish(r *sdk.Request) (*sdk.Response, error) {
	return &sdk.Response{State: r.Publication.Body, StateChanged: true, Notifications: notes(r, r.Publication.Body)}, nil
}

func (shout) Unpublish(r *sdk.Request) (*sdk.Response, error) {
	return &sdk.Response{StateChanged: true, Notifications: notes(r, nil)}, nil
}

func (shout) Render(r *sdk.Request) (*sdk.Response, error) {
	return &sdk.Response{Notifications: notes(r, r.State)}, nil
}

func notes(r *sdk.Request, body []byte) []sdk.Notification {
	var ns []sdk.Notification
	for _, w := range r.Watchers {
		ns = append(ns, sdk.Notification{WatcherID: w.ID, ContentType: "text/plain", Body: bytes.ToUpper(body)})
	}
	return ns
}

func init() { sdk.Register(shout{}) }

func main() {}
