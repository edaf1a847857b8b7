package sdk

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Helpers for Init: read the config table's values into the types a module
// wants, with an error that names the key and the value as written, so a
// bad config stops the extension with a line that says what to fix.

// SecondsKey reads cfg[key] as a positive number of seconds that fits a
// uint32 (the type of Package.DefaultExpires), or returns def when the key
// is absent.
func SecondsKey(cfg Config, key string, def uint32) (uint32, error) {
	v, ok := cfg[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("config %s = %q: want a positive number of seconds", key, v)
	}
	return uint32(n), nil
}

// BoolKey reads cfg[key] as a boolean (what strconv.ParseBool takes: true,
// false, 1, 0, ...), or returns def when the key is absent.
func BoolKey(cfg Config, key string, def bool) (bool, error) {
	v, ok := cfg[key]
	if !ok {
		return def, nil
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, fmt.Errorf("config %s = %q: want true or false", key, v)
	}
	return b, nil
}

// WarnUnknownKeys logs a warning for every key of cfg not in known, in
// sorted order. Unknown keys are warned about rather than refused so a
// config written for a later version of the module still loads; what names
// the module in the message ("presence" gives "... unknown to the presence
// package").
func WarnUnknownKeys(cfg Config, what string, known ...string) {
	var unknown []string
	for k := range cfg {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		Log(LogWarn, fmt.Sprintf("config key %q is unknown to the %s package; ignored", k, what))
	}
}
