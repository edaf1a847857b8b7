package server

import (
	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
)

// presentityOf is the presentity a request-URI or a REGISTER's To names:
// abi.Presentity, the rule modules compare a document's entity with, so
// that the resource a request reaches is the one its document names.
// FuzzPresentityOf checks that sipgo's parse loses nothing it needs.
func presentityOf(u sip.Uri) (string, bool) {
	switch {
	case u.Scheme == "":
		// sipgo writes a URI that had none (":alice@host", "*") as sip:
		// (found by FuzzPresentityOf).
		return "", false
	case u.User == "" && u.Raw() == "":
		// A sip: URI without a user names no presentity; and sipgo
		// writes an empty user without its '@', so that of a host
		// "sip:@a@b" would be read back as one (found by
		// FuzzPresentityOf). Other schemes (pres:) are kept raw.
		return "", false
	}
	return abi.Presentity(uriString(&u))
}
