package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/store"
)

// The errors a change or a check can end in. Only the SIP handlers turn
// them into answers, all through answer; every other caller (an expiry,
// an operator, the XMPP connector) logs or returns them.

// refusal is a request refused for a reason the client can act on: a code
// of 400-699, the Warning text, and any header the code calls for
// (Min-Expires with 423, Accept with 415, Allow-Events with 489).
type refusal struct {
	code    int
	reason  string
	headers []sip.Header
}

func (e *refusal) Error() string { return fmt.Sprintf("%d %s", e.code, e.reason) }

func refuse(code int, reason string, hdrs ...sip.Header) *refusal {
	return &refusal{code: code, reason: reason, headers: hdrs}
}

func refusef(code int, format string, args ...any) *refusal {
	return &refusal{code: code, reason: fmt.Sprintf(format, args...)}
}

// moduleRefusal is what a module's non-zero answer means: its code and
// reason, or 500 for a code no SIP answer may carry.
func (s *Server) moduleRefusal(ep *eventPackage, res *abi.Response) *refusal {
	code := int(res.Code)
	if code < 300 || code > 699 {
		s.log.Warn("module refused with an invalid code", "extension", ep.mod.Name(), "code", code)
		return refuse(500, res.Reason)
	}
	r := refuse(code, res.Reason)
	if code == 415 {
		r.headers = append(r.headers, sip.NewHeader("Accept", strings.Join(ep.info.Accept, ", ")))
	}
	return r
}

// storeError is a commit that failed: nothing of the change happened.
type storeError struct{ err error }

func (e *storeError) Error() string { return "state could not be stored: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// answer answers req with what err says: a refusal its code and reason, a
// saturated module 503 (come back, RFC 3261 §21.5.4), a failed module or
// store 500 with a Warning that says which, one backed off 503 for as
// long as it is.
func (s *Server) answer(req *sip.Request, tx sip.ServerTransaction, err error) {
	var rf *refusal
	var xe *extension.Error
	var se *storeError
	switch {
	case errors.As(err, &rf):
		s.reply(req, tx, rf.code, rf.reason, rf.headers...)
	case errors.Is(err, extension.ErrBackoff) && errors.As(err, &xe):
		secs := max(1, int((xe.RetryAfter+time.Second-1)/time.Second))
		s.reply(req, tx, 503, fmt.Sprintf("extension %s backing off", xe.Extension),
			sip.NewHeader("Retry-After", strconv.Itoa(secs)))
	case errors.Is(err, extension.ErrBusy):
		s.reply(req, tx, 503, "extension busy", sip.NewHeader("Retry-After", "1"))
	case errors.As(err, &xe):
		s.reply(req, tx, 500, fmt.Sprintf("extension %s failed", xe.Extension))
	case errors.As(err, &se) && errors.Is(err, store.ErrConflict):
		// Other nodes kept writing this presentity's state first, each
		// time: nothing was applied, and a try a moment later will
		// likely land. 500, not 503: RFC 3263 clients and proxies take a
		// 503 as the server being out of service and send everything
		// elsewhere, for a contention on one presentity.
		s.reply(req, tx, 500, "state changed elsewhere meanwhile, try again", sip.NewHeader("Retry-After", "1"))
	case errors.As(err, &se) && errors.Is(err, store.ErrUnavailable):
		// The database is down, restarting or cut off: nothing was
		// stored. 503 sends the client (or proxy) to another node, or
		// back later.
		s.reply(req, tx, 503, "state store out of reach", sip.NewHeader("Retry-After", strconv.Itoa(unavailableRetry)))
	case errors.As(err, &se):
		s.reply(req, tx, 500, "state could not be stored")
	default:
		s.log.Error("request failed", "method", req.Method.String(), "err", err)
		s.reply(req, tx, 500, "internal error")
	}
}

// answered makes a SIP handler of h, whose error (not yet answered) is
// answered here: one way from a typed error to a response.
func (s *Server) answered(h func(*sip.Request, sip.ServerTransaction) error) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if err := h(req, tx); err != nil {
			s.answer(req, tx, err)
		}
	}
}

// unavailableRetry is the Retry-After, in seconds, of a request refused
// while the store is out of reach: about what a database restart takes.
const unavailableRetry = 5
