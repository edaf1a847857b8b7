package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// invocation is a parsed command line.
type invocation struct {
	help    bool
	addr    string
	token   string
	format  string
	timeout time.Duration
	cmd     *command
	args    []string          // positionals after the noun and verb
	flags   map[string]string // the command's own flags
}

// flag returns the command's flag name, or def when not given.
func (inv *invocation) flag(name, def string) string {
	if v, ok := inv.flags[name]; ok {
		return v
	}
	return def
}

// command is one verb of presencectl.
type command struct {
	nouns    []string // the first is the name; the rest are aliases
	verbs    []string
	args     []string // names of the positionals, for messages
	variadic bool     // key=value arguments may follow
	flags    []string
	run      func(*client, *output, *invocation) error
}

// commands are presencectl's verbs. "ext NAME COMMAND" has no fixed verb
// and is told apart in parse.
var commands = []*command{
	{nouns: nounSubscriptions, verbs: []string{"list", "ls"}, flags: []string{"event", "presentity", "watcher"}, run: listSubscriptions},
	{nouns: nounSubscriptions, verbs: []string{"terminate", "rm"}, args: []string{"ID"}, flags: []string{"reason"}, run: terminate},
	{nouns: nounPublications, verbs: []string{"list", "ls"}, flags: []string{"event", "presentity"}, run: listPublications},
	{nouns: nounPublications, verbs: []string{"remove", "rm"}, args: []string{"ETAG"}, run: removePublication},
	{nouns: nounPresentities, verbs: []string{"list", "ls"}, flags: []string{"event"}, run: listPresentities},
	{nouns: nounPresentities, verbs: []string{"show", "get"}, args: []string{"URI"}, flags: []string{"event"}, run: showPresentity},
	{nouns: []string{"bindings", "binding"}, verbs: []string{"list", "ls"}, flags: []string{"aor"}, run: listBindings},
	{nouns: nounWatchers, verbs: []string{"approve"}, args: []string{"PRESENTITY", "WATCHER"}, flags: []string{"event"}, run: watcher("approve")},
	{nouns: nounWatchers, verbs: []string{"reject"}, args: []string{"PRESENTITY", "WATCHER"}, flags: []string{"event"}, run: watcher("reject")},
	{nouns: nounExt, verbs: []string{"list", "ls"}, run: listExtensions},
	{nouns: nounLists, verbs: []string{"list", "ls"}, run: listLists},
	{nouns: nounLists, verbs: []string{"create"}, args: []string{"URI"}, variadic: true, flags: []string{"packages"}, run: createList},
	{nouns: nounLists, verbs: []string{"add"}, args: []string{"LIST", "MEMBER"}, flags: []string{"name"}, run: listMember(true)},
	{nouns: nounLists, verbs: []string{"remove", "rm"}, args: []string{"LIST", "MEMBER"}, run: listMember(false)},
	{nouns: nounLists, verbs: []string{"delete"}, args: []string{"LIST"}, run: deleteList},
	{nouns: []string{"reload"}, run: reload},
}

// extCommand is "ext NAME COMMAND [key=value ...]".
var extCommand = &command{nouns: nounExt, args: []string{"NAME", "COMMAND"}, variadic: true,
	flags: []string{"resource", "event"}, run: runExtension}

var (
	nounSubscriptions = []string{"subscriptions", "subscription", "subs", "sub"}
	nounPublications  = []string{"publications", "publication", "pubs", "pub"}
	nounPresentities  = []string{"presentities", "presentity"}
	nounWatchers      = []string{"watchers", "watcher"}
	nounExt           = []string{"ext", "extensions", "extension"}
	nounLists         = []string{"lists", "rls"}
)

var globalFlags = []string{"addr", "token", "o", "output", "timeout"}

// parse reads args; flags, global or the command's, may come anywhere, as
// -name value, --name value or --name=value; "--" ends them.
func parse(args []string, getenv func(string) string) (*invocation, error) {
	inv := &invocation{addr: getenv("PRESENCECTL_ADDR"), token: getenv("PRESENCECTL_TOKEN"),
		format: "table", timeout: 10 * time.Second, flags: map[string]string{}}
	if inv.addr == "" {
		inv.addr = defaultAddr
	}
	var pos []string
	type setting struct{ name, value string }
	var set []setting
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		if name == "h" || name == "help" {
			inv.help = true
			continue
		}
		if !hasValue {
			if i+1 == len(args) {
				return nil, fmt.Errorf("flag -%s needs a value", name)
			}
			i++
			value = args[i]
		}
		set = append(set, setting{name, value})
	}
	if inv.help {
		return inv, nil
	}
	if len(pos) == 0 {
		return nil, errors.New("no command given")
	}
	if pos[0] == "help" {
		inv.help = true
		return inv, nil
	}
	cmd, rest, err := lookup(pos)
	if err != nil {
		return nil, err
	}
	inv.cmd = cmd
	if len(rest) < len(cmd.args) || len(rest) > len(cmd.args) && !cmd.variadic {
		return nil, fmt.Errorf("%s: want %d argument(s) %s, got %d", cmdName(cmd, pos), len(cmd.args),
			strings.Join(cmd.args, " "), len(rest))
	}
	inv.args = rest
	for _, s := range set {
		switch {
		case s.name == "addr":
			inv.addr = s.value
		case s.name == "token":
			inv.token = s.value
		case s.name == "o" || s.name == "output":
			if s.value != "table" && s.value != "json" {
				return nil, fmt.Errorf("-o %s: want table or json", s.value)
			}
			inv.format = s.value
		case s.name == "timeout":
			d, err := time.ParseDuration(s.value)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("-timeout %s: want a positive duration such as 10s", s.value)
			}
			inv.timeout = d
		case slices.Contains(cmd.flags, s.name):
			inv.flags[s.name] = s.value
		default:
			return nil, fmt.Errorf("%s has no flag --%s", cmdName(cmd, pos), s.name)
		}
	}
	return inv, nil
}

// lookup finds the command pos names, and the positionals after it.
func lookup(pos []string) (*command, []string, error) {
	noun := pos[0]
	for _, c := range commands {
		if !slices.Contains(c.nouns, noun) {
			continue
		}
		if len(c.verbs) == 0 {
			return c, pos[1:], nil
		}
		if len(pos) > 1 && slices.Contains(c.verbs, pos[1]) {
			return c, pos[2:], nil
		}
	}
	if slices.Contains(nounExt, noun) && len(pos) > 1 {
		return extCommand, pos[1:], nil
	}
	var verbs []string
	for _, c := range commands {
		if slices.Contains(c.nouns, noun) {
			verbs = append(verbs, c.verbs[0])
		}
	}
	switch {
	case len(verbs) == 0:
		return nil, nil, fmt.Errorf("unknown command %q", noun)
	case len(pos) == 1:
		return nil, nil, fmt.Errorf("%s: missing verb, one of %s", noun, strings.Join(verbs, ", "))
	}
	return nil, nil, fmt.Errorf("%s: unknown verb %q, want one of %s", noun, pos[1], strings.Join(verbs, ", "))
}

func cmdName(c *command, pos []string) string {
	if len(c.verbs) == 0 || c == extCommand {
		return pos[0]
	}
	return pos[0] + " " + pos[1]
}

// keyValues reads key=value arguments.
func keyValues(args []string) (map[string]string, error) {
	m := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usageErrorf("argument %q: want key=value", a)
		}
		m[k] = v
	}
	return m, nil
}
