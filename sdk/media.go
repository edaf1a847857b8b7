package sdk

import (
	"strings"

	"github.com/presenced/presenced/abi"
)

// MediaType is the type/subtype of a Content-Type or Accept value, lower
// case, without parameters: what to compare a publication's content type
// with. It is abi.MediaType, the host's reading too.
func MediaType(s string) string { return abi.MediaType(s) }

// Accepts reports whether a watcher's Accept values (Watcher.Accept) let
// the module send documents of mediaType: the type itself, its type/*, or
// */*, ignoring case and parameters. No Accept at all means the event
// package's default body type, which is taken to be mediaType.
func Accepts(accept []string, mediaType string) bool {
	if len(accept) == 0 {
		return true
	}
	want := MediaType(mediaType)
	wild := "*/*" // a type without a slash has no type/* of its own
	if i := strings.IndexByte(want, '/'); i >= 0 {
		wild = want[:i] + "/*"
	}
	for _, a := range accept {
		// A host may pass a header value whole, commas and all.
		for v := range strings.SplitSeq(a, ",") {
			switch MediaType(v) {
			case want, wild, "*/*":
				return true
			}
		}
	}
	return false
}

// CheckAccept refuses with 406 when a watcher does not accept mediaType
// (see Accepts), the one type the module sends; return it from Render.
func CheckAccept(watchers []Watcher, mediaType string) error {
	var accepted []string // the last list checked, which accepts mediaType
	for i := range watchers {
		a := watchers[i].Accept
		if len(a) > 0 && len(a) == len(accepted) && &a[0] == &accepted[0] {
			// The very list just checked: the codec hands watchers with
			// equal lists one slice, and a crowd's are all equal.
			continue
		}
		if !Accepts(a, mediaType) {
			return Reject(406, "watcher accepts %s; this package sends only %s",
				strings.Join(a, ", "), mediaType)
		}
		accepted = a
	}
	return nil
}

// CheckContentType refuses with 415 a publication whose content type
// (Publication.ContentType) is not mediaType, the one type the package
// takes, case and parameters aside; return it from Publish.
func CheckContentType(contentType, mediaType string) error {
	if MediaType(contentType) != MediaType(mediaType) {
		return Reject(415, "content type %q is not supported, only %s", contentType, mediaType)
	}
	return nil
}
