package abi

import "strings"

// MediaType returns the type/subtype of a Content-Type value or of one
// Accept element, lower case, without parameters: the form in which the
// host checks a PUBLISH against Package.accept and a module compares a
// publication's content type or a watcher's Accept.
func MediaType(v string) string {
	t, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(t))
}
