package sdk

import (
	"fmt"
	"slices"
	"strings"
)

// WatcherList is who something applies to, as a config key or an admin
// command names them: watcher URIs, domains, "same-domain" (the watchers
// in the presentity's own domain) and "*" (every watcher). The entries are
// canonical (WatcherEntry), so a module may keep them in its state and
// compare them as strings.
type WatcherList []string

// The entries of a WatcherList that are neither a URI nor a domain.
const (
	EveryWatcher = "*"
	SameDomain   = "same-domain"
)

// WatcherEntry canonicalizes one entry of a WatcherList: a URI becomes its
// ResourceKey (the form SameResource compares, so scheme, port and
// parameters do not matter), a domain lower case ("[::1]" is one), "*"
// and "same-domain" stay as they are. A URI without a user, or a domain
// with what only a URI has, is an error: it would match nobody.
func WatcherEntry(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == EveryWatcher || s == SameDomain:
		return s, nil
	case strings.Contains(s, ":") && !strings.HasPrefix(s, "["):
		if k := ResourceKey(s); strings.Contains(k, "@") {
			return k, nil
		}
	case s != "" && !strings.ContainsAny(s, "@;?<> "):
		return strings.ToLower(s), nil
	}
	return "", fmt.Errorf("%q: want a watcher URI (sip:user@host), a domain (example.com), %q or %q", s, SameDomain, EveryWatcher)
}

// Has reports whether the list takes in watcher (a URI, Watcher.URI), a
// watcher of resource: "*" takes in everyone, a URI entry that watcher, a
// domain entry every watcher whose host it is, "same-domain" every
// watcher whose host is resource's. A watcher URI that names no
// presentity is taken in by "*" alone.
func (l WatcherList) Has(watcher, resource string) bool {
	if len(l) == 0 {
		return false // the common case, and reducing URIs is not free in a guest
	}
	key := ResourceKey(watcher)
	if key == "" {
		return slices.Contains(l, EveryWatcher)
	}
	res := ResourceKey(resource)
	return slices.ContainsFunc(l, func(e string) bool {
		switch e {
		case EveryWatcher:
			return true
		case SameDomain:
			return res != "" && host(key) == host(res)
		}
		return e == key || e == host(key)
	})
}

// host is the host of a ResourceKey, which is lower case and has no port.
func host(key string) string { return key[strings.LastIndexByte(key, '@')+1:] }
