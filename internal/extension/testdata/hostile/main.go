// Command hostile is a test module that misbehaves on request, through the
// ordinary SDK, so the host's defences can be tested. It serves the event
// package "hostile" and switches on the published body:
//
//	"loop"   spins forever (the call deadline must stop it)
//	"alloc"  allocates until linear memory reaches memory_limit_mb
//	"panic"  traps
//	"sleep"  sleeps 10 s inside the call (the call deadline must stop it)
//	"id"     answers with this instance's random id, as state
//	anything else is stored and sent to every watcher, like echo.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/presenced/presenced/sdk"
)

type hostile struct{}

// id tells instances apart: a test that a failed instance was replaced
// asks for it before and after the failure.
var id = func() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}()

// sink keeps every allocation live, so the garbage collector cannot save
// the "alloc" call.
var sink [][]byte

func (hostile) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	return sdk.Manifest{Packages: []sdk.Package{{Event: "hostile", Accept: []string{"text/plain"}, DefaultExpires: 60}}}, nil
}

func (hostile) Publish(r *sdk.Request) (*sdk.Response, error) {
	switch body := string(r.Publication.Body); body {
	case "loop":
		for {
		}
	case "alloc":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "panic":
		panic("hostile: boom")
	case "sleep":
		time.Sleep(10 * time.Second)
		return &sdk.Response{State: []byte("slept"), StateChanged: true}, nil
	case "id":
		return &sdk.Response{State: []byte(id), StateChanged: true}, nil
	}
	return &sdk.Response{State: r.Publication.Body, StateChanged: true, Notifications: notes(r, r.Publication.Body)}, nil
}

func (hostile) Unpublish(r *sdk.Request) (*sdk.Response, error) {
	return &sdk.Response{StateChanged: true, Notifications: notes(r, nil)}, nil
}

func (hostile) Render(r *sdk.Request) (*sdk.Response, error) {
	return &sdk.Response{Notifications: notes(r, r.State)}, nil
}

func notes(r *sdk.Request, body []byte) []sdk.Notification {
	var ns []sdk.Notification
	for _, w := range r.Watchers {
		ns = append(ns, sdk.Notification{WatcherID: w.ID, ContentType: "text/plain", Body: body})
	}
	return ns
}

func init() { sdk.Register(hostile{}) }

func main() {}
