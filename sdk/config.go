package sdk

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ConfigReader reads a module's config table in Init into the types the
// module wants, one key a call, so that Init reads every key and checks
// once, at Err:
//
//	c := sdk.ReadConfig(cfg, "dialog")
//	expires := c.Seconds("default_expires", 3600)
//	m.pickup = c.Watchers("identities", sdk.SameDomain)
//	return manifest, c.Err()
//
// A bad value is kept with its key and the value as written, so a bad
// config stops the extension with a line that says what to fix; after
// one, the reader's methods return their defaults. The keys asked for are
// the ones the module knows: Err warns about any other.
type ConfigReader struct {
	cfg   Config
	what  string
	asked []string
	err   error
}

// ReadConfig returns a reader of cfg, the config of the package what
// names in a warning ("presence" gives "... unknown to the presence
// package").
func ReadConfig(cfg Config, what string) *ConfigReader {
	return &ConfigReader{cfg: cfg, what: what}
}

// Value returns cfg[key] as written and whether it is there, for a type
// the reader has no method for; report a bad value with Fail.
func (r *ConfigReader) Value(key string) (string, bool) {
	r.asked = append(r.asked, key)
	v, ok := r.cfg[key]
	return v, ok && r.err == nil
}

// Fail keeps err, the first one of the reader's, for Err.
func (r *ConfigReader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Seconds reads key as a positive number of seconds that fits a uint32
// (the type of Package.DefaultExpires), or returns def when it is absent.
func (r *ConfigReader) Seconds(key string, def uint32) uint32 {
	v, ok := r.Value(key)
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil || n == 0 {
		r.Fail(fmt.Errorf("config %s = %q: want a positive number of seconds", key, v))
		return def
	}
	return uint32(n)
}

// Bool reads key as a boolean (what strconv.ParseBool takes: true, false,
// 1, 0, ...), or returns def when it is absent.
func (r *ConfigReader) Bool(key string, def bool) bool {
	v, ok := r.Value(key)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		r.Fail(fmt.Errorf("config %s = %q: want true or false", key, v))
		return def
	}
	return b
}

// Choice reads key as one of choices, without case, or returns def when
// it is absent.
func (r *ConfigReader) Choice(key, def string, choices ...string) string {
	v, ok := r.Value(key)
	if !ok {
		return def
	}
	if c := strings.ToLower(strings.TrimSpace(v)); slices.Contains(choices, c) {
		return c
	}
	r.Fail(fmt.Errorf("config %s = %q: want %s", key, v, orList(choices)))
	return def
}

// Watchers reads key as a WatcherList, which the host flattened to a
// comma-joined string, or def (comma-joined too) when it is absent.
func (r *ConfigReader) Watchers(key, def string) WatcherList {
	v, ok := r.Value(key)
	if !ok {
		v = def
	}
	var l WatcherList
	for s := range strings.SplitSeq(v, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		e, err := WatcherEntry(s)
		if err != nil {
			r.Fail(fmt.Errorf("config %s: %w", key, err))
			return nil
		}
		l = append(l, e)
	}
	return l
}

// Err logs a warning for every key of the config that no method asked
// for, in sorted order, and returns the first bad value's error. Unknown
// keys are warned about rather than refused so that a config written for
// a later version of the module still loads.
func (r *ConfigReader) Err() error {
	var unknown []string
	for k := range r.cfg {
		if !slices.Contains(r.asked, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		Log(LogWarn, fmt.Sprintf("config key %q is unknown to the %s package; ignored", k, r.what))
	}
	return r.err
}

// orList writes choices as "a, b or c".
func orList(choices []string) string {
	if len(choices) < 2 {
		return strings.Join(choices, "")
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}
