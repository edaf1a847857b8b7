package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The API's answers, as far as presencectl shows them; docs/admin-api.md
// is the contract, so presencectl does not import the server.

type subscription struct {
	ID        string    `json:"id"`
	Event     string    `json:"event"`
	Resource  string    `json:"resource"`
	Watcher   string    `json:"watcher"`
	Status    string    `json:"status"`
	Expires   time.Time `json:"expires"`
	CSeq      uint32    `json:"cseq"`
	Transport string    `json:"transport"`
}

type publication struct {
	ETag        string    `json:"etag"`
	Event       string    `json:"event"`
	Resource    string    `json:"resource"`
	ContentType string    `json:"content_type"`
	Size        int       `json:"size"`
	Expires     time.Time `json:"expires"`
}

type binding struct {
	AOR     string    `json:"aor"`
	Contact string    `json:"contact"`
	Q       string    `json:"q"`
	Expires time.Time `json:"expires"`
}

type presentity struct {
	Event         string         `json:"event"`
	Resource      string         `json:"resource"`
	ContentType   string         `json:"content_type"`
	Document      string         `json:"document"`
	Publications  []publication  `json:"publications"`
	Subscriptions []subscription `json:"subscriptions"`
}

type extension struct {
	Name         string     `json:"name"`
	File         string     `json:"file"`
	SHA256       string     `json:"sha256"`
	ABI          string     `json:"abi"`
	Events       []string   `json:"events"`
	Commands     []string   `json:"commands"`
	Instances    int        `json:"instances"`
	MaxInstances int        `json:"max_instances"`
	Calls        int64      `json:"calls"`
	Errors       int64      `json:"errors"`
	BackoffUntil *time.Time `json:"backoff_until"`
	MeanCall     string     `json:"mean_call"`
}

type result struct {
	Result string `json:"result"`
}

func listSubscriptions(c *client, o *output, inv *invocation) error {
	var subs []subscription
	raw, err := c.get("/v1/subscriptions", filter("event", inv.flag("event", ""),
		"presentity", inv.flag("presentity", ""), "watcher", inv.flag("watcher", "")), &subs)
	if err != nil || o.raw(raw) {
		return err
	}
	subscriptionTable(o, subs)
	return o.err
}

func subscriptionTable(o *output, subs []subscription) {
	o.row("ID", "EVENT", "PRESENTITY", "WATCHER", "STATUS", "EXPIRES", "CSEQ", "TRANSPORT")
	for _, s := range subs {
		o.row(s.ID, s.Event, s.Resource, s.Watcher, s.Status, until(s.Expires), strconv.FormatUint(uint64(s.CSeq), 10), s.Transport)
	}
	o.flush()
}

func terminate(c *client, o *output, inv *invocation) error {
	id, reason := inv.args[0], inv.flag("reason", "deactivated")
	if _, err := c.do("DELETE", "/v1/subscriptions/"+url.PathEscape(id), filter("reason", reason), nil); err != nil {
		return err
	}
	o.done("terminated subscription %s (reason %s)", id, reason)
	return o.err
}

func listPublications(c *client, o *output, inv *invocation) error {
	var pubs []publication
	raw, err := c.get("/v1/publications", filter("event", inv.flag("event", ""),
		"presentity", inv.flag("presentity", "")), &pubs)
	if err != nil || o.raw(raw) {
		return err
	}
	publicationTable(o, pubs)
	return o.err
}

func publicationTable(o *output, pubs []publication) {
	o.row("ETAG", "EVENT", "PRESENTITY", "CONTENT-TYPE", "SIZE", "EXPIRES")
	for _, p := range pubs {
		o.row(p.ETag, p.Event, p.Resource, p.ContentType, strconv.Itoa(p.Size), until(p.Expires))
	}
	o.flush()
}

func removePublication(c *client, o *output, inv *invocation) error {
	if _, err := c.do("DELETE", "/v1/publications/"+url.PathEscape(inv.args[0]), nil, nil); err != nil {
		return err
	}
	o.done("removed publication %s", inv.args[0])
	return o.err
}

func listPresentities(c *client, o *output, inv *invocation) error {
	var ps []presentity
	raw, err := c.get("/v1/presentities", filter("event", inv.flag("event", "")), &ps)
	if err != nil || o.raw(raw) {
		return err
	}
	o.row("EVENT", "PRESENTITY", "PUBLICATIONS", "WATCHERS")
	for _, p := range ps {
		o.row(p.Event, p.Resource, strconv.Itoa(len(p.Publications)), strconv.Itoa(len(p.Subscriptions)))
	}
	o.flush()
	return o.err
}

func showPresentity(c *client, o *output, inv *invocation) error {
	var p presentity
	path := "/v1/presentities/" + url.PathEscape(inv.flag("event", "presence")) + "/" + url.PathEscape(inv.args[0])
	raw, err := c.get(path, nil, &p)
	if err != nil || o.raw(raw) {
		return err
	}
	o.row("presentity:", p.Resource)
	o.row("event:", p.Event)
	if p.ContentType != "" {
		o.row("content-type:", p.ContentType)
	}
	o.flush()
	o.printf("\npublications:\n")
	publicationTable(o, p.Publications)
	o.printf("\nsubscriptions:\n")
	subscriptionTable(o, p.Subscriptions)
	o.printf("\ndocument:\n")
	if p.Document == "" {
		o.printf("(none: the module renders nothing for this presentity now)\n")
	} else {
		o.printf("%s\n", strings.TrimRight(p.Document, "\r\n"))
	}
	return o.err
}

func listBindings(c *client, o *output, inv *invocation) error {
	var bs []binding
	raw, err := c.get("/v1/bindings", filter("aor", inv.flag("aor", "")), &bs)
	if err != nil || o.raw(raw) {
		return err
	}
	o.row("AOR", "CONTACT", "Q", "EXPIRES")
	for _, b := range bs {
		o.row(b.AOR, b.Contact, dash(b.Q), until(b.Expires))
	}
	o.flush()
	return o.err
}

func watcher(name string) func(*client, *output, *invocation) error {
	return func(c *client, o *output, inv *invocation) error {
		body := map[string]string{"event": inv.flag("event", "presence"), "presentity": inv.args[0], "watcher": inv.args[1]}
		return c.command(o, "/v1/watchers/"+name, body, fmt.Sprintf("%s %s for %s", name, inv.args[1], inv.args[0]))
	}
}

// command posts a command and shows its result, or what when it has none.
func (c *client) command(o *output, path string, body any, what string) error {
	data, err := c.do("POST", path, nil, body)
	if err != nil || o.raw(data) {
		return err
	}
	var r result
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("POST %s: unexpected answer: %w", path, err)
	}
	if r.Result == "" {
		r.Result = what + ": done"
	}
	o.printf("%s\n", r.Result)
	return o.err
}

func listExtensions(c *client, o *output, inv *invocation) error {
	var exts []extension
	raw, err := c.get("/v1/extensions", nil, &exts)
	if err != nil || o.raw(raw) {
		return err
	}
	o.row("NAME", "EVENTS", "COMMANDS", "ABI", "INSTANCES", "CALLS", "ERRORS", "BACKOFF", "MEAN-CALL", "SHA256", "FILE")
	for _, e := range exts {
		instances := strconv.Itoa(e.Instances)
		if e.MaxInstances > 0 {
			instances += "/" + strconv.Itoa(e.MaxInstances)
		}
		// BACKOFF is how long calls are still refused; "probing" once
		// that is over and the call let through has not returned
		backoff := ""
		if e.BackoffUntil != nil {
			backoff = "probing"
			if left := time.Until(*e.BackoffUntil); left > 0 {
				backoff = left.Round(time.Second).String()
			}
		}
		o.row(e.Name, dash(strings.Join(e.Events, ",")), dash(strings.Join(e.Commands, ",")), e.ABI,
			instances, strconv.FormatInt(e.Calls, 10), strconv.FormatInt(e.Errors, 10),
			dash(backoff), dash(e.MeanCall), short(e.SHA256), e.File)
	}
	o.flush()
	return o.err
}

// runExtension is "ext NAME COMMAND [key=value ...]": COMMAND may drop
// the "NAME_" prefix the module's commands carry (conference reset runs
// conference_reset), and the event is the module's first unless --event.
func runExtension(c *client, o *output, inv *invocation) error {
	name, cmd := inv.args[0], inv.args[1]
	args, err := keyValues(inv.args[2:])
	if err != nil {
		return err
	}
	var exts []extension
	if _, err := c.get("/v1/extensions", nil, &exts); err != nil {
		return err
	}
	i := slices.IndexFunc(exts, func(e extension) bool { return e.Name == name })
	if i < 0 {
		var names []string
		for _, e := range exts {
			names = append(names, e.Name)
		}
		return fmt.Errorf("no extension %q is loaded (loaded: %s)", name, dash(strings.Join(names, ", ")))
	}
	e := exts[i]
	full := cmd
	if !slices.Contains(e.Commands, cmd) {
		full = e.Name + "_" + cmd
		if !slices.Contains(e.Commands, full) {
			return fmt.Errorf("extension %s has no command %q (it has: %s)", e.Name, cmd, dash(strings.Join(e.Commands, ", ")))
		}
	}
	event := inv.flag("event", "")
	if event == "" {
		if len(e.Events) == 0 {
			return fmt.Errorf("extension %s serves no event package", e.Name)
		}
		event = e.Events[0]
	}
	body := map[string]any{"event": event, "resource": inv.flag("resource", ""), "command": full, "args": args}
	return c.command(o, "/v1/commands", body, full)
}

func reload(c *client, o *output, inv *invocation) error {
	return c.command(o, "/v1/reload", nil, "reload")
}

// now is the clock expiries are shown against.
var now = time.Now

// until says when t comes: "in 59m", "3s ago".
func until(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now())
	if d < 0 {
		return span(-d) + " ago"
	}
	return "in " + span(d)
}

// span is d to the precision a reader wants: seconds under ten minutes,
// minutes under a day, hours beyond.
func span(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < 10*time.Minute:
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%ds", m, s)
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	}
	return fmt.Sprintf("%dh", int(d/time.Hour))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// short abbreviates a hash as git does.
func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return dash(h)
}

type member struct {
	URI  string `json:"uri"`
	Name string `json:"name,omitempty"`
}

type resourceList struct {
	URI           string   `json:"uri"`
	Packages      []string `json:"packages"`
	Members       []member `json:"members"`
	Source        string   `json:"source"`
	Subscriptions int      `json:"subscriptions"`
}

func listLists(c *client, o *output, inv *invocation) error {
	var ls []resourceList
	raw, err := c.get("/v1/lists", nil, &ls)
	if err != nil || o.raw(raw) {
		return err
	}
	o.row("URI", "PACKAGES", "SOURCE", "SUBSCRIPTIONS", "MEMBERS")
	for _, l := range ls {
		var ms []string
		for _, m := range l.Members {
			ms = append(ms, m.URI)
		}
		o.row(l.URI, dash(strings.Join(l.Packages, ",")), l.Source, strconv.Itoa(l.Subscriptions), dash(strings.Join(ms, " ")))
	}
	o.flush()
	return o.err
}

// createList is "lists create URI [MEMBER ...] [--packages a,b]".
func createList(c *client, o *output, inv *invocation) error {
	l := resourceList{URI: inv.args[0], Members: []member{}}
	for _, m := range inv.args[1:] {
		l.Members = append(l.Members, member{URI: m})
	}
	if p := inv.flag("packages", ""); p != "" {
		l.Packages = strings.Split(p, ",")
	}
	body := map[string]any{"uri": l.URI, "packages": l.Packages, "members": l.Members}
	if _, err := c.do("POST", "/v1/lists", nil, body); err != nil {
		return err
	}
	o.done("list %s has %d member(s)", l.URI, len(l.Members))
	return o.err
}

func listMember(add bool) func(*client, *output, *invocation) error {
	return func(c *client, o *output, inv *invocation) error {
		list, uri := inv.args[0], inv.args[1]
		path, body, said := "/v1/lists/members/remove", map[string]string{"list": list, "uri": uri}, "removed %s from %s"
		if add {
			path, body["name"], said = "/v1/lists/members/add", inv.flag("name", ""), "added %s to %s"
		}
		if _, err := c.do("POST", path, nil, body); err != nil {
			return err
		}
		o.done(said, uri, list)
		return o.err
	}
}

func deleteList(c *client, o *output, inv *invocation) error {
	if _, err := c.do("DELETE", "/v1/lists/"+inv.args[0], nil, nil); err != nil {
		return err
	}
	o.done("deleted list %s", inv.args[0])
	return o.err
}
