package admin_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/admin"
	"github.com/presenced/presenced/internal/admin/admintest"
	"github.com/presenced/presenced/internal/server"
)

// do sends one request to h and returns the status and the body.
func do(t *testing.T, h http.Handler, method, target, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Header(), w.Body.String()
}

// errorOf decodes an error body, failing if it is not one.
func errorOf(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("not a JSON error body: %q (%v)", body, err)
	}
	return e.Error
}

func TestLists(t *testing.T) {
	b := admintest.Sample(time.Now())
	h := admin.New(b, admin.Options{})
	for _, tc := range []struct {
		target string
		want   int // entries
	}{
		{"/v1/subscriptions", 1},
		{"/v1/subscriptions?presentity=sip:alice@example.com&watcher=sip:bob@example.com&event=presence", 1},
		{"/v1/subscriptions?watcher=sip:carol@example.com", 0},
		{"/v1/publications?event=presence", 1},
		{"/v1/publications?presentity=sip:bob@example.com", 0},
		{"/v1/presentities", 1},
		{"/v1/presentities?event=conference", 0},
		{"/v1/bindings", 1},
		{"/v1/bindings?aor=sip:alice@example.com", 1},
		{"/v1/bindings?aor=sip:nobody@example.com", 0},
		{"/v1/extensions", 2},
	} {
		code, hdr, body := do(t, h, "GET", tc.target, "")
		if code != 200 || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %s %s", tc.target, code, hdr.Get("Content-Type"), body)
			continue
		}
		var got []map[string]any
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Errorf("GET %s: %v in %s", tc.target, err, body)
			continue
		}
		if got == nil || len(got) != tc.want {
			t.Errorf("GET %s: %d entries (nil %v), want %d: %s", tc.target, len(got), got == nil, tc.want, body)
		}
	}
}

func TestSubscriptionShape(t *testing.T) {
	h := admin.New(admintest.Sample(time.Now()), admin.Options{})
	_, _, body := do(t, h, "GET", "/v1/subscriptions", "")
	var got []map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "event", "resource", "watcher", "status", "expires", "cseq", "transport", "source", "contact", "created"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("subscription lacks %q: %s", k, body)
		}
	}
}

func TestPresentity(t *testing.T) {
	h := admin.New(admintest.Sample(time.Now()), admin.Options{})
	code, _, body := do(t, h, "GET", "/v1/presentities/presence/sip:alice@example.com", "")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var p server.PresentityInfo
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	if p.Resource != "sip:alice@example.com" || p.Document == "" || len(p.Publications) != 1 || len(p.Subscriptions) != 1 {
		t.Errorf("presentity: %+v", p)
	}
	// Escaped, as a client that escapes every URI would send it.
	code, _, body = do(t, h, "GET", "/v1/presentities/presence/sip%3Aalice%40example.com", "")
	if code != 200 {
		t.Errorf("escaped URI: %d %s", code, body)
	}
	code, _, body = do(t, h, "GET", "/v1/presentities/presence/sip:nobody@example.com", "")
	if code != 404 || !strings.Contains(errorOf(t, body), "not found") {
		t.Errorf("unknown presentity: %d %s", code, body)
	}
}

func TestTerminate(t *testing.T) {
	b := admintest.Sample(time.Now())
	h := admin.New(b, admin.Options{})
	if code, _, body := do(t, h, "DELETE", "/v1/subscriptions/d1?reason=bogus", ""); code != 400 {
		t.Errorf("bad reason: %d %s", code, body)
	}
	if code, _, body := do(t, h, "DELETE", "/v1/subscriptions/d1", ""); code != 204 || body != "" {
		t.Errorf("terminate: %d %q", code, body)
	}
	if b.Terminated["d1"] != "deactivated" {
		t.Errorf("terminated with %q, want the default deactivated", b.Terminated["d1"])
	}
	if code, _, body := do(t, h, "DELETE", "/v1/subscriptions/d1?reason=noresource", ""); code != 404 {
		t.Errorf("again: %d %s", code, body)
	}
}

func TestRemovePublication(t *testing.T) {
	b := admintest.Sample(time.Now())
	h := admin.New(b, admin.Options{})
	if code, _, body := do(t, h, "DELETE", "/v1/publications/e1", ""); code != 204 {
		t.Errorf("remove: %d %s", code, body)
	}
	if len(b.Pubs) != 0 {
		t.Errorf("publication still there")
	}
	if code, _, body := do(t, h, "DELETE", "/v1/publications/e1", ""); code != 404 {
		t.Errorf("again: %d %s", code, body)
	}
}

func TestCommand(t *testing.T) {
	b := admintest.Sample(time.Now())
	b.CommandResult = "reset 2 conferences"
	h := admin.New(b, admin.Options{})
	code, _, body := do(t, h, "POST", "/v1/commands", `{"event":"conference","resource":"","command":"conference_reset","args":{}}`)
	if code != 200 || body != `{"result":"reset 2 conferences"}`+"\n" {
		t.Errorf("command: %d %s", code, body)
	}
	if c := b.LastCall(); c.Event != "conference" || c.Resource != "" || c.Name != "conference_reset" || c.Args == nil {
		t.Errorf("ran %+v", c)
	}
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"event":"conference"}`, 400},
		{`{"event":"conference","command":"conference_reset","extra":1}`, 400},
		{`not json`, 400},
		{``, 400},
		{`{"event":"dialog","command":"x"}`, 404},
		{`{"event":"conference","command":"reboot"}`, 404},
	} {
		code, _, body := do(t, h, "POST", "/v1/commands", tc.body)
		if code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.body, code, body, tc.code)
			continue
		}
		errorOf(t, body)
	}
}

func TestCommandRefused(t *testing.T) {
	b := admintest.Sample(time.Now())
	h := admin.New(b, admin.Options{})
	for _, tc := range []struct {
		err  error
		code int
	}{
		{&server.CommandError{Code: 400, Reason: "watcher argument missing"}, 400},
		{&server.CommandError{Code: 409, Reason: "not pending"}, 409},
		{errors.Join(errors.New("sip:a@x"), &server.CommandError{Code: 603, Reason: "declined"}), 422},
		{errors.New("state could not be stored"), 500},
		{server.ErrNotFound, 404},
	} {
		b.CommandErr = tc.err
		code, _, body := do(t, h, "POST", "/v1/commands", `{"event":"conference","command":"conference_reset"}`)
		if code != tc.code || errorOf(t, body) != tc.err.Error() {
			t.Errorf("%v: %d %s, want %d", tc.err, code, body, tc.code)
		}
	}
}

func TestWatchers(t *testing.T) {
	b := admintest.Sample(time.Now())
	h := admin.New(b, admin.Options{})
	for _, name := range []string{"approve", "reject"} {
		code, _, body := do(t, h, "POST", "/v1/watchers/"+name, `{"presentity":"sip:alice@example.com","watcher":"sip:bob@example.com"}`)
		if code != 200 {
			t.Errorf("%s: %d %s", name, code, body)
		}
		c := b.LastCall()
		if c.Event != "presence" || c.Resource != "sip:alice@example.com" || c.Name != name || c.Args["watcher"] != "sip:bob@example.com" {
			t.Errorf("%s ran %+v", name, c)
		}
	}
	if code, _, body := do(t, h, "POST", "/v1/watchers/approve", `{"presentity":"sip:alice@example.com"}`); code != 400 {
		t.Errorf("no watcher: %d %s", code, body)
	}
}

func TestReload(t *testing.T) {
	b := admintest.Sample(time.Now())
	if code, _, body := do(t, admin.New(b, admin.Options{}), "POST", "/v1/reload", ""); code != 501 {
		t.Errorf("no reload: %d %s", code, body)
	}
	var err error
	h := admin.New(b, admin.Options{Reload: func() error { return err }})
	if code, _, body := do(t, h, "POST", "/v1/reload", ""); code != 200 || body != `{"result":"reloaded"}`+"\n" {
		t.Errorf("reload: %d %s", code, body)
	}
	err = errors.New(`extension "pa": compile pa.wasm: invalid magic number`)
	code, _, body := do(t, h, "POST", "/v1/reload", "")
	if code != 422 || !strings.Contains(errorOf(t, body), "invalid magic number") {
		t.Errorf("broken reload: %d %s", code, body)
	}
}

func TestToken(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "presenced_up 1\n") })
	h := admin.New(admintest.Sample(time.Now()), admin.Options{Token: "s3cret", Metrics: metrics})
	for _, target := range []string{"/v1/subscriptions", "/metrics", "/nowhere"} {
		for _, auth := range []string{"", "Bearer wrong", "s3cret", "Basic s3cret", "Bearer s3cret2"} {
			code, hdr, body := do(t, h, "GET", target, "", "Authorization", auth)
			if code != 401 || hdr.Get("WWW-Authenticate") == "" {
				t.Errorf("GET %s with %q: %d %s", target, auth, code, body)
			}
		}
	}
	if code, _, body := do(t, h, "GET", "/metrics", "", "Authorization", "Bearer s3cret"); code != 200 || body != "presenced_up 1\n" {
		t.Errorf("metrics: %d %s", code, body)
	}
	if code, _, body := do(t, h, "GET", "/v1/extensions", "", "Authorization", "Bearer s3cret"); code != 200 {
		t.Errorf("extensions: %d %s", code, body)
	}
}

func TestNoMetrics(t *testing.T) {
	h := admin.New(admintest.Sample(time.Now()), admin.Options{})
	if code, _, body := do(t, h, "GET", "/metrics", ""); code != 404 {
		t.Errorf("metrics without handler: %d %s", code, body)
	}
}

func TestProfiling(t *testing.T) {
	off := admin.New(admintest.Sample(time.Now()), admin.Options{})
	if code, _, body := do(t, off, "GET", "/debug/pprof/", ""); code != 404 {
		t.Errorf("pprof off: %d %s", code, body)
	}
	on := admin.New(admintest.Sample(time.Now()), admin.Options{Token: "s3cret", Profiling: true})
	if code, _, _ := do(t, on, "GET", "/debug/pprof/", ""); code != 401 {
		t.Errorf("pprof without the token: %d", code)
	}
	if code, _, body := do(t, on, "GET", "/debug/pprof/", "", "Authorization", "Bearer s3cret"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof index: %d %.200s", code, body)
	}
}

func TestRouting(t *testing.T) {
	h := admin.New(admintest.Sample(time.Now()), admin.Options{})
	code, hdr, body := do(t, h, "POST", "/v1/subscriptions", "{}")
	if code != 405 || !strings.Contains(hdr.Get("Allow"), "GET") || hdr.Get("Content-Type") != "application/json" {
		t.Errorf("POST subscriptions: %d %v %s", code, hdr, body)
	}
	errorOf(t, body)
	code, _, body = do(t, h, "GET", "/v1/nothing", "")
	if code != 404 {
		t.Errorf("unknown path: %d %s", code, body)
	}
	errorOf(t, body)
	if code, _, body := do(t, h, "GET", "/v1/commands", ""); code != 405 {
		t.Errorf("GET commands: %d %s", code, body)
	}
}

// The server is the backend the daemon passes.
var _ admin.Backend = (*server.Server)(nil)
