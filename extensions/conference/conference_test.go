package main

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/core/extension"
	"github.com/presenced/presenced/sdk/sdktest"
)

const (
	pkg      = "github.com/presenced/presenced/extensions/conference"
	resource = "sip:conf233@example.com"
)

var w1 = abi.Watcher{ID: "w1", URI: "sip:bob@example.com", Full: true}

func publish(state []byte, id string, body []byte) *abi.Request {
	return &abi.Request{Op: abi.OpPublish, Event: "conference", Resource: resource, State: state,
		Publication: &abi.Publication{ID: id, ContentType: infoType, Body: body}, Watchers: []abi.Watcher{w1}}
}

func unpublish(state []byte, id string) *abi.Request {
	return &abi.Request{Op: abi.OpUnpublish, Event: "conference", Resource: resource, State: state,
		Publication: &abi.Publication{ID: id}, Watchers: []abi.Watcher{w1}}
}

func handle(t *testing.T, m *extension.Module, req *abi.Request) (*abi.Response, abi.Notification) {
	t.Helper()
	res := sdktest.Handle(t, m, req)
	if len(res.Notifications) != 1 || res.Notifications[0].WatcherID != "w1" {
		t.Fatalf("notifications = %+v", res.Notifications)
	}
	return res, res.Notifications[0]
}

// version makes a distinct, still valid document from the RFC example.
func version(t *testing.T, v string) []byte {
	return bytes.Replace(sdktest.Testdata(t, "rfc4575.xml"), []byte(`version="1"`), []byte(`version="`+v+`"`), 1)
}

func TestManifestAndConfig(t *testing.T) {
	m := sdktest.Load(t, pkg, map[string]string{"use_partial_states": "true", "default_expires": "120"})
	p := m.Manifest().Packages
	if len(p) != 1 || p[0].Event != "conference" || len(p[0].Accept) != 1 || p[0].Accept[0] != infoType ||
		p[0].DefaultExpires != 120 {
		t.Fatalf("manifest = %+v", m.Manifest())
	}
	if got := sdktest.Load(t, pkg, nil).Manifest().Packages[0].DefaultExpires; got != 3600 {
		t.Fatalf("default expires = %d", got)
	}

	for _, cfg := range []map[string]string{{"default_expires": "0"}, {"use_partial_states": "sometimes"}} {
		if err := sdktest.LoadError(t, pkg, cfg); err == nil {
			t.Errorf("config %v loaded, want an error", cfg)
		}
	}
}

func TestPassThrough(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	v1, v2, v3 := version(t, "1"), version(t, "2"), version(t, "3")

	res, n := handle(t, m, publish(nil, "a", v1))
	if !res.StateChanged || n.ContentType != infoType || !bytes.Equal(n.Body, v1) {
		t.Fatalf("publish a: %+v", res)
	}
	res, n = handle(t, m, publish(res.State, "b", v2))
	if !bytes.Equal(n.Body, v2) {
		t.Fatalf("publish b sent %.80q", n.Body)
	}
	// Modifying a makes it the most recent.
	res, n = handle(t, m, publish(res.State, "a", v3))
	if !bytes.Equal(n.Body, v3) {
		t.Fatalf("modify a sent %.80q", n.Body)
	}
	state := res.State

	_, n = handle(t, m, &abi.Request{Op: abi.OpRender, Event: "conference", Resource: resource,
		State: state, Watchers: []abi.Watcher{w1}})
	if !bytes.Equal(n.Body, v3) {
		t.Fatalf("render sent %.80q", n.Body)
	}

	res, n = handle(t, m, unpublish(state, "a"))
	if !res.StateChanged || !bytes.Equal(n.Body, v2) {
		t.Fatalf("after unpublish a, sent %.80q, want b's", n.Body)
	}
	res, n = handle(t, m, unpublish(res.State, "b"))
	if !res.StateChanged || n.ContentType != "" || n.Body != nil {
		t.Fatalf("after the last unpublish: %+v", res)
	}
	res, n = handle(t, m, unpublish(state, "nobody"))
	if res.StateChanged || !bytes.Equal(n.Body, v3) {
		t.Fatalf("unpublish of an unknown id: %+v", res)
	}
}

func TestRejects(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	tests := []struct{ file, reason string }{
		{"bad-unclosed.xml", "not well-formed XML: XML syntax error on line 5: element <users> closed by </conference-info>"},
		{"bad-root.xml", `root element is <presence> in namespace "urn:ietf:params:xml:ns:pidf", want <conference-info> in "urn:ietf:params:xml:ns:conference-info"`},
		{"bad-no-entity.xml", "<conference-info> has no entity attribute"},
		{"bad-entity.xml", `entity "sip:conf999@example.com" is not the resource published to, "sip:conf233@example.com"`},
	}
	for _, tt := range tests {
		res, err := m.Handle(context.Background(), publish(nil, "a", sdktest.Testdata(t, tt.file)))
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != 400 || res.Reason != tt.reason || res.StateChanged {
			t.Errorf("%s: got %d %q, want 400 %q", tt.file, res.Code, res.Reason, tt.reason)
		}
	}

	req := publish(nil, "a", sdktest.Testdata(t, "rfc4575.xml"))
	req.Publication.ContentType = "application/pidf+xml"
	res, err := m.Handle(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 415 || res.Reason != `content type "application/pidf+xml" is not supported, only application/conference-info+xml` {
		t.Fatalf("got %d %q", res.Code, res.Reason)
	}

	res, err = m.Handle(context.Background(), &abi.Request{Op: abi.OpRender, Event: "conference", Resource: resource,
		Watchers: []abi.Watcher{{ID: "w1", Accept: []string{"application/pidf+xml"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 406 {
		t.Fatalf("render for a watcher accepting only PIDF: %d %q", res.Code, res.Reason)
	}
}

func TestUndecodableStateFails(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	_, err := m.Handle(context.Background(), &abi.Request{Op: abi.OpRender, Event: "conference",
		Resource: resource, State: []byte{0x0a, 0x10, 'x'}, Watchers: []abi.Watcher{w1}})
	var xerr *extension.Error
	if !errors.As(err, &xerr) {
		t.Fatalf("err = %v, want *extension.Error", err)
	}
}
