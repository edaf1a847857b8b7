package sdk

import (
	"strings"
	"testing"
)

func TestWatcherEntry(t *testing.T) {
	for in, want := range map[string]string{
		" sips:Bob@Example.COM:5061;transport=tls ": "sip:Bob@example.com",
		"Partner.Example": "partner.example",
		"[::1]":           "[::1]",
		"*":               "*",
		"same-domain":     "same-domain",
	} {
		if got, err := WatcherEntry(in); got != want || err != nil {
			t.Errorf("WatcherEntry(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	// each would match nobody: a URI without a user, a user without a
	// scheme, a URI's parameters on a domain, nothing at all
	for _, in := range []string{"sip:example.com", "bob@example.com", "example.com;transport=tcp", ""} {
		if got, err := WatcherEntry(in); err == nil || !strings.Contains(err.Error(), "want a watcher URI") {
			t.Errorf("WatcherEntry(%q) = %q, %v; want an error", in, got, err)
		}
	}
}

func TestWatcherListHas(t *testing.T) {
	const alice = "sip:alice@example.com"
	for _, c := range []struct {
		list    WatcherList
		watcher string
		want    bool
	}{
		{WatcherList{"sip:bob@example.org"}, "Bob <sips:bob@EXAMPLE.org:5061>", true},
		{WatcherList{"sip:bob@example.org"}, "sip:Bob@example.org", false},
		{WatcherList{"example.org"}, "sip:carol@example.org", true},
		{WatcherList{"example.org"}, "sip:carol@sub.example.org", false},
		{WatcherList{SameDomain}, "sip:carol@Example.com", true},
		{WatcherList{SameDomain}, "sip:carol@example.org", false},
		{WatcherList{EveryWatcher}, "sip:anyone@anywhere.example", true},
		{WatcherList{EveryWatcher}, "not a uri", true},
		{WatcherList{SameDomain, "example.com"}, "not a uri", false},
		{nil, alice, false},
	} {
		if got := c.list.Has(c.watcher, alice); got != c.want {
			t.Errorf("%q.Has(%q) = %v, want %v", c.list, c.watcher, got, c.want)
		}
	}
	if (WatcherList{SameDomain}).Has("sip:carol@example.com", "not a uri") {
		t.Errorf("same-domain took in a watcher of a resource without a domain")
	}
}
