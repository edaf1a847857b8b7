package main

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/presenced/presenced/sdk"
)

// classes are RFC 3458's message-context-classes as RFC 3842 names them in
// a summary line.
var classes = []string{"Voice-Message", "Fax-Message", "Pager-Message", "Multimedia-Message", "Text-Message", "None"}

// A summary line's counts: new/old, then optionally (urgent new/urgent old).
var countsRe = regexp.MustCompile(`^(\d+)\s*/\s*(\d+)(?:\s*\(\s*(\d+)\s*/\s*(\d+)\s*\))?$`)

func bad(format string, args ...any) error { return sdk.Reject(400, format, args...) }

// check reads an application/simple-message-summary body (RFC 3842 §5.2)
// strictly, and reports whether it counts a new message. A phone parses
// the body with less care than a server can, so what it would misread is
// refused here, naming the line at fault.
func check(body []byte) (newMessages bool, err error) {
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	head, tail, _ := strings.Cut(strings.TrimLeft(text, "\n"), "\n\n")
	if strings.TrimSpace(head) == "" {
		return false, bad("empty summary: the first line must be Messages-Waiting: yes or no")
	}
	waiting, seen := false, map[string]bool{}
	for i, line := range strings.Split(strings.TrimRight(head, "\n"), "\n") {
		name, value, err := header(line)
		if err != nil {
			return false, err
		}
		class := ""
		for _, c := range classes {
			if strings.EqualFold(name, c) {
				class = c
			}
		}
		switch {
		case i == 0 && !strings.EqualFold(name, "Messages-Waiting"):
			return false, bad("the first line is %s; it must be Messages-Waiting", name)
		case i == 0 && !strings.EqualFold(value, "yes") && !strings.EqualFold(value, "no"):
			return false, bad("Messages-Waiting: %q: want yes or no", value)
		case i == 0:
			waiting = strings.EqualFold(value, "yes")
		case strings.EqualFold(name, "Message-Account") && i != 1:
			return false, bad("Message-Account on line %d: it must follow Messages-Waiting", i+1)
		case strings.EqualFold(name, "Message-Account"):
			if scheme, rest, ok := strings.Cut(value, ":"); !ok || scheme == "" || rest == "" || strings.ContainsAny(value, " <>\"") {
				return false, bad("Message-Account %q is not a URI", value)
			}
		case class == "":
			return false, bad("line %d: unknown message class %q; want one of %s", i+1, name, strings.Join(classes, ", "))
		case seen[class]:
			return false, bad("%s twice", class)
		default:
			seen[class] = true
			m := countsRe.FindStringSubmatch(value)
			if m == nil {
				return false, bad("%s: %q: want new/old or new/old (urgent new/urgent old)", class, value)
			}
			var n [4]uint64
			for j, d := range m[1:] {
				if n[j], err = strconv.ParseUint(d, 10, 32); d != "" && err != nil {
					return false, bad("%s: %s is not a count of messages", class, d)
				}
			}
			if n[2] > n[0] || n[3] > n[1] {
				return false, bad("%s: %q: the urgent messages are some of the new and old ones, so no more than them", class, value)
			}
			if n[0] > 0 && !waiting {
				return false, bad("Messages-Waiting: no, but %s has %d new", class, n[0])
			}
			newMessages = newMessages || n[0] > 0
		}
	}
	for line := range strings.SplitSeq(strings.TrimRight(tail, "\n"), "\n") {
		if _, _, err := header(line); line != "" && err != nil {
			return false, err
		}
	}
	return newMessages, nil
}

// header splits a "Name: value" line.
func header(line string) (name, value string, err error) {
	name, value, ok := strings.Cut(line, ":")
	if name = strings.TrimSpace(name); !ok || name == "" || strings.ContainsAny(name, " \t") {
		return "", "", bad("%q is not a header line (Name: value)", line)
	}
	return name, strings.TrimSpace(value), nil
}
