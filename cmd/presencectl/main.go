// Command presencectl drives a running presenced through its admin API
// (docs/admin-api.md): list and end subscriptions and publications, show
// presentities, approve watchers, run module commands, reload.
//
// Exit codes: 0 ok, 1 the server refused, 2 usage error, 3 the server
// could not be reached.
package main

import (
	"fmt"
	"io"
	"os"
)

const (
	exitOK          = 0
	exitRefused     = 1
	exitUsage       = 2
	exitUnreachable = 3
)

const defaultAddr = "http://127.0.0.1:8070"

const usage = `usage: presencectl [flags] COMMAND [ARGS] [flags]

Drives a running presenced through its admin API.

Commands:
  subscriptions list [--event E] [--presentity URI] [--watcher URI]
  subscriptions terminate ID [--reason deactivated]
  publications list [--event E] [--presentity URI]
  publications remove ETAG
  presentities list [--event E]
  presentities show URI [--event presence]
  bindings list [--aor URI]
  watchers approve PRESENTITY WATCHER [--event presence]
  watchers reject PRESENTITY WATCHER [--event presence]
  ext list
  ext NAME COMMAND [--resource URI] [--event E] [key=value ...]
        e.g. "ext conference reset" runs conference_reset for every conference
  reload
  help

Flags (anywhere on the line):
  -addr URL       admin API address (env PRESENCECTL_ADDR, default ` + defaultAddr + `)
  -token TOKEN    bearer token (env PRESENCECTL_TOKEN)
  -o table|json   output format (default table); json prints the API's answer
  -timeout D      request timeout (default 10s)

Exit codes: 0 ok, 1 the server refused, 2 usage error, 3 cannot reach the server.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is presencectl with its arguments, returning the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	inv, err := parse(args, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "presencectl: %v\n(run \"presencectl help\" for usage)\n", err)
		return exitUsage
	}
	if inv.help {
		io.WriteString(stdout, usage)
		return exitOK
	}
	c, err := newClient(inv.addr, inv.token, inv.timeout)
	if err != nil {
		fmt.Fprintf(stderr, "presencectl: %v\n", err)
		return exitUsage
	}
	o := &output{w: stdout, json: inv.format == "json"}
	if err := inv.cmd.run(c, o, inv); err != nil {
		fmt.Fprintf(stderr, "presencectl: %v\n", err)
		return exitCode(err)
	}
	return exitOK
}
