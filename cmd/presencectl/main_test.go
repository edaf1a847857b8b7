package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/admin"
	"github.com/presenced/presenced/internal/admin/admintest"
	"github.com/presenced/presenced/internal/rls"
	"github.com/presenced/presenced/internal/server"
)

// fixture is an admin API over a sample backend, with the clock frozen so
// that expiries read the same every run.
func fixture(t *testing.T, opt admin.Options) (*admintest.Backend, string) {
	t.Helper()
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	old := now
	now = func() time.Time { return t0 }
	t.Cleanup(func() { now = old })
	t.Setenv("PRESENCECTL_ADDR", "")
	t.Setenv("PRESENCECTL_TOKEN", "")
	b := admintest.Sample(t0)
	srv := httptest.NewServer(admin.New(b, opt))
	t.Cleanup(srv.Close)
	return b, srv.URL
}

// ctl runs presencectl and returns its exit code, stdout and stderr.
func ctl(args ...string) (int, string, string) {
	var out, errw bytes.Buffer
	code := run(args, &out, &errw)
	return code, out.String(), errw.String()
}

func TestTables(t *testing.T) {
	_, addr := fixture(t, admin.Options{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"subscriptions", "list", "--presentity", "sip:alice@example.com"},
			"ID  EVENT     PRESENTITY             WATCHER              STATUS  EXPIRES  CSEQ  TRANSPORT\n" +
				"d1  presence  sip:alice@example.com  sip:bob@example.com  active  in 1h    3     UDP\n"},
		{[]string{"subscriptions", "list", "--watcher=sip:carol@example.com"},
			"ID  EVENT  PRESENTITY  WATCHER  STATUS  EXPIRES  CSEQ  TRANSPORT\n"},
		{[]string{"publications", "list"},
			"ETAG  EVENT     PRESENTITY             CONTENT-TYPE          SIZE  EXPIRES\n" +
				"e1    presence  sip:alice@example.com  application/pidf+xml  210   in 30m\n"},
		{[]string{"presentities", "list", "--event", "presence"},
			"EVENT     PRESENTITY             PUBLICATIONS  WATCHERS\n" +
				"presence  sip:alice@example.com  1             1\n"},
		{[]string{"bindings", "list", "--aor", "sip:alice@example.com"},
			"AOR                    CONTACT                  Q    EXPIRES\n" +
				"sip:alice@example.com  sip:alice@10.0.0.1:5060  0.5  in 2h\n"},
		{[]string{"ext", "list"},
			"NAME        EVENTS                   COMMANDS          ABI  INSTANCES  CALLS  ERRORS  BACKOFF  MEAN-CALL  SHA256        FILE\n" +
				"pa          presence,presence.winfo  approve,reject    1    2/8        10     0       -        120µs      ab12cd34ef56  /usr/lib/presenced/pa.wasm\n" +
				"conference  conference               conference_reset  1    0/8        0      5       probing  -          99aa          /usr/lib/presenced/conference.wasm\n"},
	} {
		code, out, errOut := ctl(append(tc.args, "-addr", addr)...)
		if code != exitOK || out != tc.want {
			t.Errorf("%v: exit %d, stderr %q, stdout\n%s\nwant\n%s", tc.args, code, errOut, out, tc.want)
		}
	}
}

func TestShowPresentity(t *testing.T) {
	_, addr := fixture(t, admin.Options{})
	code, out, errOut := ctl("-addr", addr, "presentities", "show", "sip:alice@example.com")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"presentity:    sip:alice@example.com", "content-type:  application/pidf+xml",
		"e1    presence", "d1  presence", "document:\n<presence entity=\"sip:alice@example.com\"/>\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	code, _, errOut = ctl("-addr", addr, "presentities", "show", "sip:alice@example.com", "--event", "conference")
	if code != exitRefused || !strings.Contains(errOut, "not found") {
		t.Errorf("unknown presentity: exit %d, %s", code, errOut)
	}
}

func TestJSON(t *testing.T) {
	_, addr := fixture(t, admin.Options{})
	code, out, _ := ctl("subscriptions", "list", "-o", "json", "-addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var subs []server.SubscriptionInfo
	if err := json.Unmarshal([]byte(out), &subs); err != nil || len(subs) != 1 || subs[0].ID != "d1" || subs[0].Source == "" {
		t.Errorf("json: %v %+v\n%s", err, subs, out)
	}
	if !strings.Contains(out, "\n  {\n    \"id\": \"d1\",") {
		t.Errorf("json is not indented:\n%s", out)
	}
	code, out, _ = ctl("-o", "json", "-addr", addr, "subscriptions", "list", "--event", "conference")
	if code != exitOK || out != "[]\n" {
		t.Errorf("empty json: exit %d %q", code, out)
	}
}

func TestActions(t *testing.T) {
	b, addr := fixture(t, admin.Options{})
	if code, out, errOut := ctl("-addr", addr, "subscriptions", "terminate", "d1", "--reason", "noresource"); code != exitOK ||
		out != "terminated subscription d1 (reason noresource)\n" || b.Terminated["d1"] != "noresource" {
		t.Errorf("terminate: exit %d %q %q %v", code, out, errOut, b.Terminated)
	}
	if code, _, errOut := ctl("-addr", addr, "subscriptions", "terminate", "d1"); code != exitRefused || !strings.Contains(errOut, "not found (HTTP 404)") {
		t.Errorf("terminate again: exit %d %q", code, errOut)
	}
	if code, out, _ := ctl("-addr", addr, "publications", "remove", "e1"); code != exitOK || out != "removed publication e1\n" || len(b.Pubs) != 0 {
		t.Errorf("remove: exit %d %q", code, out)
	}
	if code, out, _ := ctl("-addr", addr, "watchers", "approve", "sip:alice@example.com", "sip:bob@example.com"); code != exitOK ||
		out != "approve sip:bob@example.com for sip:alice@example.com: done\n" {
		t.Errorf("approve: exit %d %q", code, out)
	}
	if c := b.LastCall(); c.Event != "presence" || c.Resource != "sip:alice@example.com" || c.Name != "approve" || c.Args["watcher"] != "sip:bob@example.com" {
		t.Errorf("approve ran %+v", c)
	}
	b.CommandErr = &server.CommandError{Code: 404, Reason: "no pending watcher sip:bob@example.com"}
	if code, _, errOut := ctl("-addr", addr, "watchers", "reject", "sip:alice@example.com", "sip:bob@example.com", "--event", "presence"); code != exitRefused ||
		!strings.Contains(errOut, "no pending watcher") {
		t.Errorf("reject refused: exit %d %q", code, errOut)
	}
}

func TestExtensionCommand(t *testing.T) {
	b, addr := fixture(t, admin.Options{})
	b.CommandResult = "reset 2 conferences"
	for _, args := range [][]string{{"ext", "conference", "reset"}, {"ext", "conference", "conference_reset"}} {
		code, out, errOut := ctl(append(args, "-addr", addr)...)
		if code != exitOK || out != "reset 2 conferences\n" {
			t.Errorf("%v: exit %d %q %q", args, code, out, errOut)
		}
		if c := b.LastCall(); c.Event != "conference" || c.Resource != "" || c.Name != "conference_reset" || len(c.Args) != 0 {
			t.Errorf("%v ran %+v", args, c)
		}
	}
	code, _, _ := ctl("-addr", addr, "ext", "pa", "approve", "watcher=sip:bob@example.com", "--resource", "sip:alice@example.com")
	if c := b.LastCall(); code != exitOK || c.Event != "presence" || c.Resource != "sip:alice@example.com" || c.Name != "approve" ||
		c.Args["watcher"] != "sip:bob@example.com" {
		t.Errorf("ext pa approve: exit %d, ran %+v", code, c)
	}
	code, out, _ := ctl("-addr", addr, "-o", "json", "ext", "conference", "reset")
	if code != exitOK || out != "{\n  \"result\": \"reset 2 conferences\"\n}\n" {
		t.Errorf("json: exit %d %q", code, out)
	}
	for _, args := range [][]string{{"ext", "conference", "reboot"}, {"ext", "dialog", "reset"}} {
		if code, _, errOut := ctl(append(args, "-addr", addr)...); code != exitRefused || errOut == "" {
			t.Errorf("%v: exit %d %q", args, code, errOut)
		}
	}
	if code, _, _ := ctl("-addr", addr, "ext", "conference", "reset", "novalue"); code != exitUsage {
		t.Errorf("bad key=value: exit %d", code)
	}
}

func TestReload(t *testing.T) {
	var fail error
	_, addr := fixture(t, admin.Options{Reload: func() error { return fail }})
	if code, out, _ := ctl("-addr", addr, "reload"); code != exitOK || out != "reloaded\n" {
		t.Errorf("reload: exit %d %q", code, out)
	}
	fail = errors.New("compile pa.wasm: invalid magic number")
	if code, _, errOut := ctl("-addr", addr, "reload"); code != exitRefused || !strings.Contains(errOut, "invalid magic number") ||
		!strings.Contains(errOut, "HTTP 422") {
		t.Errorf("broken reload: exit %d %q", code, errOut)
	}
}

func TestToken(t *testing.T) {
	_, addr := fixture(t, admin.Options{Token: "s3cret"})
	if code, _, errOut := ctl("-addr", addr, "ext", "list"); code != exitRefused || !strings.Contains(errOut, "HTTP 401") {
		t.Errorf("no token: exit %d %q", code, errOut)
	}
	if code, _, errOut := ctl("-addr", addr, "-token", "s3cret", "ext", "list"); code != exitOK {
		t.Errorf("token flag: exit %d %q", code, errOut)
	}
	t.Setenv("PRESENCECTL_TOKEN", "s3cret")
	t.Setenv("PRESENCECTL_ADDR", strings.TrimPrefix(addr, "http://"))
	if code, _, errOut := ctl("ext", "list"); code != exitOK {
		t.Errorf("token from env: exit %d %q", code, errOut)
	}
}

func TestUsage(t *testing.T) {
	_, addr := fixture(t, admin.Options{})
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"subscriptions"},
		{"subscriptions", "frob"},
		{"subscriptions", "terminate"},
		{"subscriptions", "terminate", "d1", "d2"},
		{"subscriptions", "list", "--aor", "x"},
		{"subscriptions", "list", "--event"},
		{"subscriptions", "list", "-o", "yaml"},
		{"subscriptions", "list", "-timeout", "soon"},
		{"watchers", "approve", "sip:alice@example.com"},
		{"ext"},
		{"ext", "conference"},
		{"reload", "now"},
		{"-addr", "ftp://x", "reload"},
	} {
		if len(args) == 0 || args[0] != "-addr" {
			args = append(args, "-addr", addr)
		}
		code, out, errOut := ctl(args...)
		if code != exitUsage || out != "" || !strings.HasPrefix(errOut, "presencectl: ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"subscriptions", "list", "--help"}} {
		code, out, _ := ctl(args...)
		if code != exitOK || !strings.HasPrefix(out, "usage: presencectl") {
			t.Errorf("%v: exit %d %q", args, code, out)
		}
	}
}

func TestUnreachable(t *testing.T) {
	_, _ = fixture(t, admin.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	code, _, errOut := ctl("-addr", addr, "-timeout", "2s", "subscriptions", "list")
	if code != exitUnreachable || !strings.Contains(errOut, "cannot reach the server") {
		t.Errorf("exit %d %q", code, errOut)
	}
}

func TestSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 59 * time.Second: "59s", 4*time.Minute + 30*time.Second: "4m30s", 5 * time.Minute: "5m",
		59*time.Minute + 59*time.Second: "59m", time.Hour: "1h", 25*time.Hour + 5*time.Minute: "25h",
		3*time.Hour + 7*time.Minute: "3h7m",
	} {
		if got := span(d); got != want {
			t.Errorf("span(%v) = %q, want %q", d, got, want)
		}
	}
	t0 := time.Now()
	now = func() time.Time { return t0 }
	defer func() { now = time.Now }()
	if got := until(t0.Add(-3 * time.Second)); got != "3s ago" {
		t.Errorf("until past: %q", got)
	}
	if got := until(time.Time{}); got != "-" {
		t.Errorf("until zero: %q", got)
	}
}

// The lists verbs drive the admin API's lists endpoints: made, grown,
// shrunk, shown and deleted, and a list of the rls-services file refused.
func TestResourceLists(t *testing.T) {
	b, addr := fixture(t, admin.Options{})
	b.ResourceLists = []server.ListInfo{{URI: "sip:friends@example.com", Members: []rls.Member{{URI: "sip:alice@example.com"}}, Source: "file"}}
	if code, out, errOut := ctl("-addr", addr, "lists", "create", "sip:mates@example.com", "sip:bob@example.com", "--packages", "presence,dialog"); code != exitOK ||
		out != "list sip:mates@example.com has 1 member(s)\n" {
		t.Fatalf("create: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := ctl("-addr", addr, "lists", "add", "sip:mates@example.com", "sip:carol@example.com", "--name", "Carol"); code != exitOK ||
		out != "added sip:carol@example.com to sip:mates@example.com\n" {
		t.Fatalf("add: exit %d %q %q", code, out, errOut)
	}
	if code, _, errOut := ctl("-addr", addr, "lists", "add", "sip:mates@example.com", "sip:carol@example.com"); code != exitRefused || !strings.Contains(errOut, "HTTP 409") {
		t.Fatalf("add twice: exit %d %q", code, errOut)
	}
	if code, _, errOut := ctl("-addr", addr, "lists", "add", "sip:friends@example.com", "sip:carol@example.com"); code != exitRefused || !strings.Contains(errOut, "rls-services file: conflict (HTTP 409)") {
		t.Fatalf("add to the file's list: exit %d %q", code, errOut)
	}
	if code, out, _ := ctl("-addr", addr, "lists", "rm", "sip:mates@example.com", "sip:bob@example.com"); code != exitOK || !strings.HasPrefix(out, "removed sip:bob@example.com") {
		t.Fatalf("remove: exit %d %q", code, out)
	}
	code, out, _ := ctl("-addr", addr, "lists", "ls")
	if code != exitOK || !strings.Contains(out, "sip:mates@example.com") || !strings.Contains(out, "presence,dialog") ||
		!strings.Contains(out, "sip:carol@example.com") || strings.Contains(out, "sip:bob@example.com") || !strings.Contains(out, "file") {
		t.Fatalf("ls: exit %d\n%s", code, out)
	}
	if code, _, _ := ctl("-addr", addr, "lists", "delete", "sip:mates@example.com"); code != exitOK || len(b.Lists()) != 1 {
		t.Fatalf("delete: exit %d, %d lists left", code, len(b.Lists()))
	}
	if code, _, errOut := ctl("-addr", addr, "lists", "delete", "sip:mates@example.com"); code != exitRefused || !strings.Contains(errOut, "HTTP 404") {
		t.Fatalf("delete again: exit %d %q", code, errOut)
	}
}
