package sdk

import (
	"strings"
	"testing"
)

// A request without the input its op is about fails before any handler
// runs, so that no handler checks for it.
func TestDispatchChecksInput(t *testing.T) {
	m := NewMux(func(string, Config) (Manifest, error) { return Manifest{}, nil })
	m.Handle("a", stub("a"))
	for _, c := range []struct {
		req  *Request
		want string
	}{
		{&Request{Op: OpPublish, Event: "a"}, "without a publication"},
		{&Request{Op: OpUnpublish, Event: "a"}, "without a publication"},
		{&Request{Op: OpCommand, Event: "a"}, "without a command"},
		{&Request{Op: OpBinding, Event: "a"}, "without a binding"},
		{&Request{Op: OpXMPP, Event: "a"}, "without a presence"},
	} {
		if res, err := Dispatch(m, c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %+v, %v; want an error saying %q", c.req.Op, res, err, c.want)
		}
	}
	if res, err := Dispatch(m, &Request{Op: OpUnpublish, Event: "a", Publication: &Publication{ID: "p"}}); err != nil || res.Reason != "a unpublish" {
		t.Errorf("with its publication: %+v, %v", res, err)
	}
}

type commander struct{ stubModule }

func (commander) Command(req *Request) (*Response, error) {
	return &Response{Reason: "ran " + req.Command.Name}, nil
}

type stubModule struct{ Handler }

func (stubModule) Init(string, Config) (Manifest, error) {
	return Manifest{Commands: []string{"set", "reset"}}, nil
}

// After initialize, Dispatch runs only the commands the manifest lists,
// and a manifest that lists commands needs a Command method.
func TestInitializeHoldsCommands(t *testing.T) {
	defer func() { commands = nil }()
	if _, err := initialize(stubModule{stub("a")}, "x", nil); err == nil || !strings.Contains(err.Error(), "no Command method") {
		t.Fatalf("commands without a Command method: %v", err)
	}
	m := commander{stubModule{stub("a")}}
	if res, err := Dispatch(m, &Request{Op: OpCommand, Command: &Command{Name: "other"}}); err != nil || res.Reason != "ran other" {
		t.Fatalf("before initialize, nothing is held: %+v %v", res, err)
	}
	if _, err := initialize(m, "x", nil); err != nil {
		t.Fatal(err)
	}
	if res, err := Dispatch(m, &Request{Op: OpCommand, Command: &Command{Name: "reset"}}); err != nil || res.Reason != "ran reset" {
		t.Fatalf("a listed command: %+v %v", res, err)
	}
	res, err := Dispatch(m, &Request{Op: OpCommand, Command: &Command{Name: "explode"}})
	if err != nil || res.Code != 400 || res.Reason != `unknown command "explode"; this module has set, reset` {
		t.Fatalf("an unlisted command: %+v %v", res, err)
	}
}

func TestCheckArgs(t *testing.T) {
	c := &Command{Name: "set", Args: map[string]string{"voice": "1/0", "account": "sip:a@b"}}
	if err := CheckArgs(c, "account", "voice", "fax"); err != nil {
		t.Fatal(err)
	}
	c.Args["vioce"], c.Args["zz"] = "2/0", ""
	err := CheckArgs(c, "account", "voice", "fax")
	if rej, ok := err.(*Rejection); !ok || rej.Code != 400 || rej.Reason != `unknown argument "vioce"; set takes account, voice, fax` {
		t.Fatalf("got %v", err)
	}
}

type quietCommander struct{ stubModule }

func (quietCommander) Command(req *Request) (*Response, error) {
	return &Response{Notifications: make([]Notification, 2)}, nil
}

// A command that says nothing of itself tells the operator the resource
// and how many watchers it reached; one that does keeps its own words.
func TestCommandDefaultReason(t *testing.T) {
	res, err := Dispatch(quietCommander{stubModule{stub("a")}}, &Request{Op: OpCommand, Resource: "sip:a@b", Command: &Command{Name: "set"}})
	if err != nil || res.Reason != "sip:a@b: 2 watcher(s) notified" {
		t.Fatalf("%+v %v", res, err)
	}
	res, err = Dispatch(commander{stubModule{stub("a")}}, &Request{Op: OpCommand, Command: &Command{Name: "set"}})
	if err != nil || res.Reason != "ran set" {
		t.Fatalf("%+v %v", res, err)
	}
}
