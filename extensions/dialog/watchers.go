package main

import (
	"fmt"
	"strings"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"google.golang.org/protobuf/encoding/protowire"
)

// watchers is a config list of who something applies to: "*" (everyone),
// "same-domain" (watchers in the presentity's domain), a watcher's URI (as
// sdk.ResourceKey reduces it) or a domain (lower case).
type watchers []string

func watcherList(cfg sdk.Config, key, def string) (watchers, error) {
	v, ok := cfg[key]
	if !ok {
		v = def
	}
	var l watchers
	for e := range strings.SplitSeq(v, ",") {
		switch e = strings.TrimSpace(e); {
		case e == "":
		case e == "*" || e == "same-domain":
			l = append(l, e)
		case strings.Contains(e, ":") && strings.Contains(sdk.ResourceKey(e), "@"):
			l = append(l, sdk.ResourceKey(e))
		case strings.Contains(e, ":") || strings.ContainsAny(e, "@;?<> "):
			return nil, fmt.Errorf("config %s: %q: want \"*\", \"same-domain\", a watcher URI (sip:user@host) or a domain (example.com)", key, e)
		default:
			l = append(l, strings.ToLower(e))
		}
	}
	return l, nil
}

// has reports whether the list takes in watcher, a watcher of resource.
func (l watchers) has(watcher, resource string) bool {
	key, res := sdk.ResourceKey(watcher), sdk.ResourceKey(resource)
	host := func(k string) string { return k[strings.LastIndexByte(k, '@')+1:] }
	for _, e := range l {
		if e == "*" || key != "" && (e == key || e == host(key) || e == "same-domain" && host(key) == host(res)) {
			return true
		}
	}
	return false
}

// sent is a watcher's state: the version of its next NOTIFY (RFC 4235
// §4.1: 0 in the first, one more in each after it) and a hash of the
// dialogs it was last sent, so a change that is not one for this watcher
// sends it nothing. In protobuf wire format, so a later version can add
// fields: message Watcher { uint64 next = 1; uint64 hash = 2; }.
type sent struct{ next, hash uint64 }

func decodeSent(b []byte) (s sent, err error) {
	err = abi.Fields(b, func(f abi.Field) error {
		switch {
		case f.IsVarint(1):
			s.next = f.Varint
		case f.IsVarint(2):
			s.hash = f.Varint
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("decode watcher state: %w", err)
	}
	return s, err
}

func (s sent) encode() []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, s.next)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	return protowire.AppendVarint(b, s.hash)
}
