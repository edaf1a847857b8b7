// Command mwi is the "message-summary" event package (RFC 3842), message
// waiting indication: a voice mail server PUBLISHes a mailbox's
// application/simple-message-summary, or an operator sets its counts with
// the command set, and every watcher of the mailbox gets the latest
// summary.
package main

import (
	"cmp"
	"strings"

	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
)

const (
	event       = "message-summary"
	summaryType = "application/simple-message-summary"
	// operatorID is the publication the command set keeps its summary
	// under, beside the host's publications, whose ids it never takes.
	operatorID = "operator"
)

// mwi sends every watcher the most recently published or set summary. Two
// sources of one mailbox are not added up: a mailbox has one voice mail
// server, and adding would count twice what two of them say. With nothing
// published, watchers get a body rather than an empty NOTIFY, which some
// devices do not parse.
type mwi struct{ pubstate.Handler }

func (mwi) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	c := sdk.ReadConfig(cfg, event)
	expires := c.Seconds("default_expires", 3600)
	return sdk.Manifest{
		Packages: []sdk.Package{{Event: event, Accept: []string{summaryType}, DefaultExpires: expires}},
		Commands: []string{"set"},
	}, c.Err()
}

// Command set replaces the mailbox's summary with the one its arguments
// give: account, waiting (yes or no; by default yes when there is a new
// message) and one per class (voice, fax, pager, multimedia, text, none)
// as a summary line writes it, "new/old" or "new/old (urgent new/urgent
// old)". The summary is checked as a PUBLISHed one is. The SDK runs it
// only for set, the manifest's one command, and tells the operator how
// many watchers it reached.
func (m mwi) Command(req *sdk.Request) (*sdk.Response, error) {
	if err := sdk.CheckArgs(req.Command, "account", "waiting", "voice", "fax", "pager", "multimedia", "text", "none"); err != nil {
		return nil, err
	}
	args := req.Command.Args
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
	return m.Change(req, func(st *pubstate.State) error { st.Push(operatorID, body); return nil })
}

func init() {
	sdk.Register(mwi{pubstate.Latest(summaryType, []byte("Messages-Waiting: no\r\n"),
		func(body []byte) error { _, err := check(body); return err })})
}

func main() {}
