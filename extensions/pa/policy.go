package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/presenced/presenced/sdk"
)

// Watcher authorization (RFC 3857's pending/active/rejected), decided here
// rather than by the host so that a module with another notion of who may
// see what can replace it.

const (
	policyAllow      = "allow"
	policySameDomain = "same-domain"
	policyConfirm    = "confirm"
)

// policy is the config's part of the decision: a default and two lists.
type policy struct {
	mode         string
	allow, block []string // sdk.ResourceKey of a URI, or a lower-case domain
}

func parsePolicy(cfg sdk.Config) (policy, error) {
	p := policy{mode: policyAllow}
	if v, ok := cfg["policy"]; ok {
		switch m := strings.ToLower(strings.TrimSpace(v)); m {
		case policyAllow, policySameDomain, policyConfirm:
			p.mode = m
		default:
			return p, fmt.Errorf("config policy = %q: want allow, same-domain or confirm", v)
		}
	}
	var err error
	if p.allow, err = listKey(cfg, "allow"); err != nil {
		return p, err
	}
	if p.block, err = listKey(cfg, "block"); err != nil {
		return p, err
	}
	return p, nil
}

// listKey reads a list the host flattened to a comma-joined string.
func listKey(cfg sdk.Config, key string) ([]string, error) {
	v, ok := cfg[key]
	if !ok {
		return nil, nil
	}
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		e, err := entry(s)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", key, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// entry canonicalizes one list entry: a watcher URI or a bare domain.
func entry(s string) (string, error) {
	if strings.Contains(s, ":") && !strings.HasPrefix(s, "[") {
		if k := sdk.ResourceKey(s); k != "" && strings.Contains(k, "@") {
			return k, nil
		}
		return "", fmt.Errorf("%q: want a watcher URI (sip:user@host) or a domain (example.com)", s)
	}
	if strings.ContainsAny(s, "@;?<> ") {
		return "", fmt.Errorf("%q: want a watcher URI (sip:user@host) or a domain (example.com)", s)
	}
	return strings.ToLower(s), nil
}

// host returns the host of a ResourceKey, which is lower case and has no
// port.
func host(key string) string {
	return key[strings.LastIndexByte(key, '@')+1:]
}

// matches reports whether a watcher (its ResourceKey) is on a list, by URI
// or by its domain.
func matches(list []string, key string) bool {
	if key == "" {
		return false
	}
	h := host(key)
	return slices.ContainsFunc(list, func(e string) bool { return e == key || e == h })
}

// decide is the status of a new watcher of resource. The presentity's own
// decisions (approve, reject) come before the config's, the presentity
// itself is always allowed, and a block wins over an allow at each level.
func (p *policy) decide(st *state, resource, watcherURI string) string {
	key := sdk.ResourceKey(watcherURI)
	switch {
	case matches(st.Block, key):
		return sdk.StatusRejected
	case matches(st.Allow, key), key != "" && key == sdk.ResourceKey(resource):
		return sdk.StatusActive
	case matches(p.block, key):
		return sdk.StatusRejected
	case matches(p.allow, key):
		return sdk.StatusActive
	}
	switch p.mode {
	case policySameDomain:
		if r := sdk.ResourceKey(resource); key != "" && r != "" && host(key) == host(r) {
			return sdk.StatusActive
		}
		return sdk.StatusPending
	case policyConfirm:
		return sdk.StatusPending
	}
	return sdk.StatusActive
}
