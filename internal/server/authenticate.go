package server

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/header"
)

// Auth says which requests need digest authentication (RFC 3261 §22).
type Auth struct {
	Authenticator *auth.Authenticator
	Realms        []string // domains whose users must authenticate (the From host)
	Methods       []string // e.g. PUBLISH, SUBSCRIBE, REGISTER
	// OwnerOnly: a user may PUBLISH only for their own presentity and
	// REGISTER only their own address of record.
	OwnerOnly bool
}

// authenticate challenges a request from a user of a protected realm
// until it carries valid credentials for its From identity. On refusal it
// has answered: 401 with a challenge per algorithm (stale=true for an
// expired nonce with the right password), or 403 when the authenticated
// user acts for someone else.
func (s *Server) authenticate(req *sip.Request, tx sip.ServerTransaction) bool {
	a := s.opt.Auth
	if a == nil || !contains(a.Methods, req.Method.String()) {
		return true
	}
	from := req.From().Address
	realm := strings.ToLower(from.Host)
	if !contains(a.Realms, realm) {
		return true
	}
	var creds []string
	for _, h := range header.All(req, "Authorization") {
		creds = append(creds, h.Value())
	}
	user, err := a.Authenticator.Verify(req.Method.String(), req.Recipient.String(), realm, creds)
	if err != nil {
		var hdrs []sip.Header
		for _, c := range a.Authenticator.Challenge(realm, errors.Is(err, auth.ErrStale)) {
			hdrs = append(hdrs, sip.NewHeader("WWW-Authenticate", c))
		}
		warning := ""
		if !errors.Is(err, auth.ErrNoCredentials) {
			warning = "authentication failed"
			s.log.Info("authentication failed", "realm", realm, "source", req.Source(), "err", err)
		}
		s.reply(req, tx, 401, warning, hdrs...)
		return false
	}
	if user != from.User {
		s.reply(req, tx, 403, fmt.Sprintf("authenticated as %s@%s, not as the From user", user, realm))
		return false
	}
	if !a.OwnerOnly {
		return true
	}
	var target sip.Uri
	switch req.Method {
	case sip.PUBLISH:
		target = req.Recipient
	case sip.REGISTER:
		target = req.To().Address
	default:
		return true
	}
	if target.User != user || !strings.EqualFold(target.Host, realm) {
		s.reply(req, tx, 403, fmt.Sprintf("%s@%s may %s only for itself", user, realm, req.Method))
		return false
	}
	return true
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}
