package main

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/presenced/presenced/sdk"
)

// classes are RFC 3458's message-context-classes as RFC 3842 names them in
// a summary line.
var classes = []string{"Voice-Message", "Fax-Message", "Pager-Message", "Multimedia-Message", "Text-Message", "None"}

// A summary line's counts: new/old, then optionally (urgent new/urgent old).
var countsRe = regexp.MustCompile(`^(\d+)\s*/\s*(\d+)(?:\s*\(\s*(\d+)\s*/\s*(\d+)\s*\))?$`)

// check reads an application/simple-message-summary body (RFC 3842 §5.2)
// strictly, and reports whether it counts a new message. A phone parses
// the body with less care than a server can, so what it would misread is
// refused here, naming the line at fault. The blocks after the first are
// message headers (To, From, Subject, ...), only read as header lines.
func check(body []byte) (newMessages bool, err error) {
	blocks, err := sdk.ReadHeaders(body)
	if err != nil {
		return false, err
	}
	if len(blocks) == 0 {
		return false, sdk.Reject(400, "empty summary: the first line must be Messages-Waiting: yes or no")
	}
	waiting, seen := false, map[string]bool{}
	for i, h := range blocks[0] {
		switch class := h.Name; {
		case i == 0 && h.Name != "Messages-Waiting":
			return false, sdk.Reject(400, "the first line is %s; it must be Messages-Waiting", h.Name)
		case i == 0 && !strings.EqualFold(h.Value, "yes") && !strings.EqualFold(h.Value, "no"):
			return false, sdk.Reject(400, "Messages-Waiting: %q: want yes or no", h.Value)
		case i == 0:
			waiting = strings.EqualFold(h.Value, "yes")
		case h.Name == "Message-Account" && i != 1:
			return false, sdk.Reject(400, "Message-Account on line %d: it must follow Messages-Waiting", h.Line)
		case h.Name == "Message-Account":
			if scheme, rest, ok := strings.Cut(h.Value, ":"); !ok || scheme == "" || rest == "" || strings.ContainsAny(h.Value, " <>\"") {
				return false, sdk.Reject(400, "Message-Account %q is not a URI", h.Value)
			}
		case !slices.Contains(classes, class):
			return false, sdk.Reject(400, "line %d: unknown message class %q; want one of %s", h.Line, h.Name, strings.Join(classes, ", "))
		case seen[class]:
			return false, sdk.Reject(400, "%s twice", class)
		default:
			seen[class] = true
			m := countsRe.FindStringSubmatch(h.Value)
			if m == nil {
				return false, sdk.Reject(400, "%s: %q: want new/old or new/old (urgent new/urgent old)", class, h.Value)
			}
			var n [4]uint64
			for j, d := range m[1:] {
				if n[j], err = strconv.ParseUint(d, 10, 32); d != "" && err != nil {
					return false, sdk.Reject(400, "%s: %s is not a count of messages", class, d)
				}
			}
			if n[2] > n[0] || n[3] > n[1] {
				return false, sdk.Reject(400, "%s: %q: the urgent messages are some of the new and old ones, so no more than them", class, h.Value)
			}
			if n[0] > 0 && !waiting {
				return false, sdk.Reject(400, "Messages-Waiting: no, but %s has %d new", class, n[0])
			}
			newMessages = newMessages || n[0] > 0
		}
	}
	return newMessages, nil
}
