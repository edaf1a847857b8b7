// Package admin owns the admin HTTP API: JSON over the server's operator
// methods; it starts no listener itself. docs/admin-api.md describes it.
package admin

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"

	"github.com/presenced/presenced/internal/rls"
	"github.com/presenced/presenced/internal/server"
)

// Backend is what the API drives. *server.Server satisfies it; reload is
// the daemon's work (re-reading the TOML) and comes in Options.
type Backend interface {
	Subscriptions(server.Filter) []server.SubscriptionInfo
	Publications(server.Filter) []server.PublicationInfo
	Bindings(aor string) []server.BindingInfo
	Presentities(event string) []server.PresentityInfo
	Presentity(event, uri string) (server.PresentityInfo, error)
	Terminate(id, reason string) error
	RemovePublication(etag string) error
	Extensions() []server.ExtensionInfo
	Command(event, resource, name string, args map[string]string) (string, error)
	Lists() []server.ListInfo
	PutList(rls.List) error
	AddListMember(list string, m rls.Member) error
	RemoveListMember(list, member string) error
	DeleteList(uri string) error
}

// Options configure the API.
type Options struct {
	// Token, when set, is required of every request as
	// "Authorization: Bearer TOKEN".
	Token string
	// Reload does what SIGHUP does: re-read the TOML and reload the
	// modules, keeping the running set on error. Nil answers 501.
	Reload func() error
	// Metrics, when set, is served at GET /metrics (behind the token too).
	Metrics http.Handler
	// Profiling serves net/http/pprof under /debug/pprof/ (behind the
	// token too): CPU and heap profiles of a live server.
	Profiling bool
	Logger    *slog.Logger
}

// maxBody bounds a request body; the largest is a command with its args.
const maxBody = 1 << 20

// New returns the API's handler, to be served on the listener the daemon
// chooses.
func New(b Backend, opt Options) http.Handler {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{b: b, opt: opt, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /v1/subscriptions", a.subscriptions)
	a.mux.HandleFunc("DELETE /v1/subscriptions/{id}", a.terminate)
	a.mux.HandleFunc("GET /v1/publications", a.publications)
	a.mux.HandleFunc("DELETE /v1/publications/{etag}", a.removePublication)
	a.mux.HandleFunc("GET /v1/presentities", a.presentities)
	a.mux.HandleFunc("GET /v1/presentities/{event}/{uri...}", a.presentity)
	a.mux.HandleFunc("GET /v1/bindings", a.bindings)
	a.mux.HandleFunc("GET /v1/extensions", a.extensions)
	a.mux.HandleFunc("POST /v1/commands", a.command)
	a.mux.HandleFunc("POST /v1/watchers/approve", a.watcher("approve"))
	a.mux.HandleFunc("POST /v1/watchers/reject", a.watcher("reject"))
	a.mux.HandleFunc("GET /v1/lists", a.lists)
	a.mux.HandleFunc("POST /v1/lists", a.putList)
	a.mux.HandleFunc("DELETE /v1/lists/{uri...}", a.deleteList)
	a.mux.HandleFunc("POST /v1/lists/members/add", a.listMember(true))
	a.mux.HandleFunc("POST /v1/lists/members/remove", a.listMember(false))
	a.mux.HandleFunc("POST /v1/reload", a.reload)
	if opt.Metrics != nil {
		a.mux.Handle("GET /metrics", opt.Metrics)
	}
	if opt.Profiling {
		a.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		a.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		a.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		a.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	return a
}

type api struct {
	b   Backend
	opt Options
	mux *http.ServeMux
}

// errorBody is every error's shape.
type errorBody struct {
	Error string `json:"error"`
}

// resultBody answers commands and reload.
type resultBody struct {
	Result string `json:"result"`
}

// statusWriter remembers the status and the error message, for the log.
type statusWriter struct {
	http.ResponseWriter
	code int
	msg  string
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (the metrics
// handler flushes).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (a *api) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &statusWriter{ResponseWriter: rw}
	defer a.log(w, r)
	if !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="presenced"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	h, pattern := a.mux.Handler(r)
	if pattern == "" {
		// The mux's own 404, 405 or redirect: keep its status and headers
		// (Allow on 405), but say it in JSON like everything else.
		c := &captureWriter{header: http.Header{}}
		h.ServeHTTP(c, r)
		hdr := w.Header()
		for k, v := range c.header {
			if k != "Content-Type" && k != "X-Content-Type-Options" && k != "Content-Length" {
				hdr[k] = v
			}
		}
		if c.code < 400 {
			w.WriteHeader(c.code)
			return
		}
		writeError(w, c.code, strings.TrimSpace(c.body.String())+": "+r.Method+" "+r.URL.Path)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// captureWriter holds a response of the mux's own handlers.
type captureWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
func (c *captureWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return c.body.Write(p)
}

func (a *api) authorized(r *http.Request) bool {
	if a.opt.Token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(a.opt.Token)) == 1
}

func (a *api) log(w *statusWriter, r *http.Request) {
	code := w.code
	if code == 0 {
		code = http.StatusOK
	}
	if code >= 400 {
		a.opt.Logger.Info("admin request refused", "method", r.Method, "path", r.URL.Path,
			"status", code, "error", w.msg, "remote", r.RemoteAddr)
		return
	}
	a.opt.Logger.Debug("admin request", "method", r.Method, "path", r.URL.Path, "status", code)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	if sw, ok := w.(*statusWriter); ok {
		sw.msg = msg
	}
	writeJSON(w, code, errorBody{Error: msg})
}

// fail answers err with the status it calls for: 404 for ErrNotFound, the
// module's own code for a refused command if it is a 4xx (422 otherwise),
// and fallback for the rest.
func fail(w http.ResponseWriter, err error, fallback int) {
	code := fallback
	var ce *server.CommandError
	switch {
	case errors.Is(err, server.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, server.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, server.ErrInvalid):
		code = http.StatusBadRequest
	case errors.As(err, &ce):
		code = http.StatusUnprocessableEntity
		if ce.Code >= 400 && ce.Code < 500 {
			code = int(ce.Code)
		}
	}
	writeError(w, code, err.Error())
}

// decode reads a JSON body into v, refusing unknown fields so that a typo
// in a script is an error rather than a silent default.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("empty body")
		}
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad request body: more than one JSON value")
		return false
	}
	return true
}

// orEmpty makes an empty list encode as [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (a *api) subscriptions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := server.Filter{Event: q.Get("event"), Resource: q.Get("presentity"), Watcher: q.Get("watcher")}
	writeJSON(w, http.StatusOK, orEmpty(a.b.Subscriptions(f)))
}

func (a *api) terminate(w http.ResponseWriter, r *http.Request) {
	reason := r.URL.Query().Get("reason")
	if reason == "" {
		reason = "deactivated"
	}
	// Terminate fails only for an unknown subscription or reason.
	if err := a.b.Terminate(r.PathValue("id"), reason); err != nil {
		fail(w, err, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) publications(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := server.Filter{Event: q.Get("event"), Resource: q.Get("presentity")}
	writeJSON(w, http.StatusOK, orEmpty(a.b.Publications(f)))
}

func (a *api) removePublication(w http.ResponseWriter, r *http.Request) {
	// Besides ErrNotFound, the module refused the removal or failed.
	if err := a.b.RemovePublication(r.PathValue("etag")); err != nil {
		fail(w, err, http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) presentities(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, orEmpty(a.b.Presentities(r.URL.Query().Get("event"))))
}

func (a *api) presentity(w http.ResponseWriter, r *http.Request) {
	p, err := a.b.Presentity(r.PathValue("event"), r.PathValue("uri"))
	if err != nil {
		fail(w, err, http.StatusInternalServerError)
		return
	}
	p.Publications, p.Subscriptions = orEmpty(p.Publications), orEmpty(p.Subscriptions)
	writeJSON(w, http.StatusOK, p)
}

func (a *api) bindings(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, orEmpty(a.b.Bindings(r.URL.Query().Get("aor"))))
}

func (a *api) extensions(w http.ResponseWriter, r *http.Request) {
	exts := orEmpty(a.b.Extensions())
	for i := range exts {
		exts[i].Events, exts[i].Commands = orEmpty(exts[i].Events), orEmpty(exts[i].Commands)
	}
	writeJSON(w, http.StatusOK, exts)
}

// CommandRequest is the body of POST /v1/commands.
type CommandRequest struct {
	Event    string            `json:"event"`
	Resource string            `json:"resource"` // "" runs it for every resource of the package
	Command  string            `json:"command"`
	Args     map[string]string `json:"args"`
}

// WatcherRequest is the body of POST /v1/watchers/approve and /reject.
type WatcherRequest struct {
	Event      string `json:"event"` // presence when empty
	Presentity string `json:"presentity"`
	Watcher    string `json:"watcher"`
}

func (a *api) command(w http.ResponseWriter, r *http.Request) {
	var req CommandRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Event == "" || req.Command == "" {
		writeError(w, http.StatusBadRequest, `"event" and "command" are required`)
		return
	}
	if req.Args == nil {
		req.Args = map[string]string{}
	}
	a.run(w, req)
}

func (a *api) watcher(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req WatcherRequest
		if !decode(w, r, &req) {
			return
		}
		if req.Presentity == "" || req.Watcher == "" {
			writeError(w, http.StatusBadRequest, `"presentity" and "watcher" are required`)
			return
		}
		if req.Event == "" {
			req.Event = "presence"
		}
		a.run(w, CommandRequest{Event: req.Event, Resource: req.Presentity, Command: name,
			Args: map[string]string{"watcher": req.Watcher}})
	}
}

// run runs a module command. An unknown package or command is told apart
// here, as a 404, from a failure of the module or the store (500); the
// server reports both as plain errors.
func (a *api) run(w http.ResponseWriter, req CommandRequest) {
	if msg := a.unknown(req.Event, req.Command); msg != "" {
		writeError(w, http.StatusNotFound, msg)
		return
	}
	res, err := a.b.Command(req.Event, req.Resource, req.Command, req.Args)
	if err != nil {
		fail(w, err, http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, resultBody{Result: res})
}

// unknown says why no loaded extension has command for event, or "".
func (a *api) unknown(event, command string) string {
	for _, e := range a.b.Extensions() {
		if !slices.Contains(e.Events, event) {
			continue
		}
		if slices.Contains(e.Commands, command) {
			return ""
		}
		return fmt.Sprintf("extension %s (event %s) has no command %q; it has %s",
			e.Name, event, command, list(e.Commands))
	}
	return fmt.Sprintf("no loaded extension serves event package %q", event)
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func (a *api) reload(w http.ResponseWriter, r *http.Request) {
	if a.opt.Reload == nil {
		writeError(w, http.StatusNotImplemented, "reload is not available here")
		return
	}
	if err := a.opt.Reload(); err != nil {
		writeError(w, http.StatusUnprocessableEntity, "reload refused, the running configuration stays: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, resultBody{Result: "reloaded"})
}

func (a *api) lists(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, orEmpty(a.b.Lists()))
}

// putList creates a list, or replaces one made through the API.
func (a *api) putList(w http.ResponseWriter, r *http.Request) {
	var l rls.List
	if !decode(w, r, &l) {
		return
	}
	if l.URI == "" {
		writeError(w, http.StatusBadRequest, `"uri" is required`)
		return
	}
	if err := a.b.PutList(l); err != nil {
		fail(w, err, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) deleteList(w http.ResponseWriter, r *http.Request) {
	if err := a.b.DeleteList(r.PathValue("uri")); err != nil {
		fail(w, err, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// MemberRequest is the body of POST /v1/lists/members/add and /remove.
type MemberRequest struct {
	List string `json:"list"`
	URI  string `json:"uri"`
	Name string `json:"name"` // add only: the member's display name
}

func (a *api) listMember(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req MemberRequest
		if !decode(w, r, &req) {
			return
		}
		if req.List == "" || req.URI == "" {
			writeError(w, http.StatusBadRequest, `"list" and "uri" are required`)
			return
		}
		var err error
		if add {
			err = a.b.AddListMember(req.List, rls.Member{URI: req.URI, Name: req.Name})
		} else {
			err = a.b.RemoveListMember(req.List, req.URI)
		}
		if err != nil {
			fail(w, err, http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
