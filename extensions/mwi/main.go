// Command mwi is the "message-summary" event package (RFC 3842), message
// waiting indication: a voice mail server PUBLISHes a mailbox's
// application/simple-message-summary, or an operator sets its counts with
// the command set, and every watcher of the mailbox gets the latest
// summary.
package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
)

const (
	event       = "message-summary"
	summaryType = "application/simple-message-summary"
	cmdSet      = "set"
	// operatorID is the publication the command set keeps its summary
	// under, beside the host's publications, whose ids it never takes.
	operatorID = "operator"
)

// noMessages is what a mailbox nobody published for shows: a body rather
// than an empty NOTIFY, which some devices do not parse.
var noMessages = []byte("Messages-Waiting: no\r\n")

type mwi struct{}

func (mwi) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	sdk.WarnUnknownKeys(cfg, event, "default_expires")
	expires, err := sdk.SecondsKey(cfg, "default_expires", 3600)
	if err != nil {
		return sdk.Manifest{}, err
	}
	return sdk.Manifest{
		Packages: []sdk.Package{{Event: event, Accept: []string{summaryType}, DefaultExpires: expires}},
		Commands: []string{cmdSet},
	}, nil
}

func (mwi) Publish(req *sdk.Request) (*sdk.Response, error) {
	p := req.Publication
	if sdk.MediaType(p.ContentType) != summaryType {
		return nil, sdk.Reject(415, "content type %q is not supported, only %s", p.ContentType, summaryType)
	}
	if _, err := check(p.Body); err != nil {
		return nil, err
	}
	return change(req, func(st *pubstate.State) { st.Push(p.ID, p.Body) })
}

func (mwi) Unpublish(req *sdk.Request) (*sdk.Response, error) {
	return change(req, func(st *pubstate.State) { st.Remove(req.Publication.ID) })
}

func (mwi) Render(req *sdk.Request) (*sdk.Response, error) {
	if err := sdk.CheckAccept(req.Watchers, summaryType); err != nil {
		return nil, err
	}
	st, err := pubstate.Decode(req.State)
	if err != nil {
		return nil, err
	}
	return notify(&sdk.Response{}, req, latest(st)), nil
}

// Command set replaces the mailbox's summary with the one its arguments
// give: account, waiting (yes or no; by default yes when there is a new
// message) and one per class (voice, fax, pager, multimedia, text, none)
// as a summary line writes it, "new/old" or "new/old (urgent new/urgent
// old)". The summary is checked as a PUBLISHed one is.
func (mwi) Command(req *sdk.Request) (*sdk.Response, error) {
	if req.Command.Name != cmdSet {
		return nil, sdk.Reject(400, "unknown command; this package has %s", cmdSet)
	}
	args := req.Command.Args
	for k := range args {
		if !slices.Contains([]string{"account", "waiting", "voice", "fax", "pager", "multimedia", "text", "none"}, k) {
			return nil, sdk.Reject(400, "unknown argument %q; set takes account, waiting, voice, fax, pager, multimedia, text and none", k)
		}
	}
	var lines string
	if args["account"] != "" {
		lines += "Message-Account: " + args["account"] + "\r\n"
	}
	for _, class := range classes {
		if v, ok := args[strings.ToLower(strings.TrimSuffix(class, "-Message"))]; ok {
			lines += class + ": " + v + "\r\n"
		}
	}
	body := []byte("Messages-Waiting: " + cmp.Or(args["waiting"], "yes") + "\r\n" + lines)
	newMessages, err := check(body)
	if err != nil {
		return nil, err
	}
	if args["waiting"] == "" && !newMessages {
		body = []byte("Messages-Waiting: no\r\n" + lines)
	}
	res, err := change(req, func(st *pubstate.State) { st.Push(operatorID, body) })
	if err != nil {
		return nil, err
	}
	res.Reason = fmt.Sprintf("%s: %s; %d watcher(s) notified", req.Resource,
		strings.ReplaceAll(strings.TrimSpace(string(body)), "\r\n", ", "), len(res.Notifications))
	return res, nil
}

// latest is what watchers see: the most recently published or set
// summary. Two sources of one mailbox are not added up: a mailbox has one
// voice mail server, and adding would count twice what two of them say.
func latest(st *pubstate.State) []byte {
	if p, ok := st.Latest(); ok {
		return p.Body
	}
	return noMessages
}

// change applies edit to the state and notifies every watcher when what
// they see changed: a refresh that says the same again sends nothing.
func change(req *sdk.Request, edit func(*pubstate.State)) (*sdk.Response, error) {
	st, err := pubstate.Decode(req.State)
	if err != nil {
		return nil, err
	}
	before := latest(st)
	edit(st)
	res := &sdk.Response{State: st.Encode(), StateChanged: true}
	if after := latest(st); string(after) != string(before) {
		notify(res, req, after)
	}
	return res, nil
}

func notify(res *sdk.Response, req *sdk.Request, body []byte) *sdk.Response {
	for _, w := range req.Watchers {
		res.Notifications = append(res.Notifications, sdk.Notification{WatcherID: w.ID, ContentType: summaryType, Body: body})
	}
	return res
}

var _ sdk.CommandHandler = mwi{}

func init() { sdk.Register(mwi{}) }

func main() {}
