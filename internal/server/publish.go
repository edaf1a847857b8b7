package server

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/header"
	"github.com/presenced/presenced/internal/store"
)

// onPublish is the event state compositor of RFC 3903: a PUBLISH without
// SIP-If-Match creates a publication; with one it refreshes (no body),
// modifies (a body) or removes (Expires: 0) the publication of that ETag.
func (s *Server) onPublish(req *sip.Request, tx sip.ServerTransaction) {
	_, ep, ok := s.event(req, tx)
	if !ok {
		return
	}
	uri, ok := s.resourceURI(req, tx)
	if !ok {
		return
	}
	secs, given, ok := s.expires(req, tx, ep.publication, ep.info.DefaultExpires)
	if !ok {
		return
	}
	body := req.Body()
	if max := s.opt.Limits.MaxBodyBytes; max > 0 && len(body) > max {
		s.reply(req, tx, 413, fmt.Sprintf("body of %d bytes is over the limit of %d", len(body), max))
		return
	}
	if len(body) > 0 && !s.acceptable(req, tx, ep) {
		return
	}
	var etag string
	if h := req.GetHeader("SIP-If-Match"); h != nil {
		etag = strings.TrimSpace(h.Value())
	}
	if etag == "" {
		if len(body) == 0 {
			s.reply(req, tx, 400, "PUBLISH without a body needs SIP-If-Match")
			return
		}
		if secs == 0 {
			s.reply(req, tx, 400, "Expires: 0 without SIP-If-Match removes nothing")
			return
		}
		s.publishNew(req, tx, ep, uri, secs, body)
		return
	}

	// An ETag is looked up among its presentity's publications (one to a
	// few): a server-wide index by ETag was ~45 bytes of every publication.
	s.mu.Lock()
	r := s.resources[resourceKey{ep.name, uri}]
	s.mu.Unlock()
	var p *publication
	if r != nil {
		r.mu.Lock()
		defer s.release(r)
		p = r.pubByETag(etag) // none if r died meanwhile: it had none
	}
	if p == nil {
		s.reply(req, tx, 412, fmt.Sprintf("no publication with entity-tag %q for %s", etag, uri))
		return
	}
	switch {
	case given && secs == 0:
		s.unpublish(req, tx, r, p)
	case len(body) == 0:
		s.republish(req, tx, r, p, secs, nil)
	default:
		s.republish(req, tx, r, p, secs, body)
	}
}

// acceptable checks the body's Content-Type against what the package
// accepts; on failure it has answered.
func (s *Server) acceptable(req *sip.Request, tx sip.ServerTransaction, ep *eventPackage) bool {
	ct := header.ContentType(req)
	if ct == "" {
		s.reply(req, tx, 400, "body without Content-Type")
		return false
	}
	if !ep.accept[ct] {
		s.reply(req, tx, 415, fmt.Sprintf("%s does not take %s", ep.name, ct),
			sip.NewHeader("Accept", strings.Join(ep.info.Accept, ", ")))
		return false
	}
	return true
}

func (s *Server) publishNew(req *sip.Request, tx sip.ServerTransaction, ep *eventPackage, uri string, secs int, body []byte) {
	r := s.lockResource(ep, uri)
	defer s.release(r)
	if max := s.opt.Limits.MaxPublicationsPerPresentity; max > 0 && len(r.pubs) >= max {
		s.reply(req, tx, 403, fmt.Sprintf("%s has %d publications, the limit", uri, max))
		return
	}
	p := &publication{id: newOrderedID(), etag: newToken(), ctype: ep.mediaType(header.ContentType(req)), size: len(body), res: r}
	p.exp.at = time.Now().Add(time.Duration(secs) * time.Second).UnixNano()
	rec := p.record()
	if !s.change(req, tx, r, abi.OpPublish, p, body, &store.Batch{Publications: []store.Publication{rec}}) {
		return
	}
	r.addPub(p)
	s.opt.Metrics.Publications(ep.name, 1)
	s.armPublication(p, rec.Expires)
	s.publishOK(req, tx, etagAndExpires(p.etag, secs))
	s.notifyAll(r)
}

// mediaType is ct as the package's Accept list spells it (a string every
// publication of the package shares), or ct.
func (ep *eventPackage) mediaType(ct string) string {
	if i := slices.Index(ep.info.Accept, ct); i >= 0 {
		return ep.info.Accept[i]
	}
	return ct
}

// republish refreshes (body nil) or modifies a publication: a new ETag
// either way (RFC 3903 §6), a module call only when the body changed.
func (s *Server) republish(req *sip.Request, tx sip.ServerTransaction, r *resource, p *publication, secs int, body []byte) {
	etag, ctype := newToken(), p.ctype
	expires := time.Now().Add(time.Duration(secs) * time.Second)
	b := &store.Batch{}
	if body != nil {
		ctype = r.pkg.mediaType(header.ContentType(req))
		next := &publication{id: p.id, etag: etag, ctype: ctype, size: len(body), res: r}
		next.exp.at = expires.UnixNano()
		b.Publications = []store.Publication{next.record()}
		if !s.change(req, tx, r, abi.OpPublish, next, body, b) {
			return
		}
	} else {
		b.PublicationRefreshes = []store.PublicationRefresh{{ID: p.id, ETag: etag, Expires: expires}}
		if !s.commit(req, tx, b) {
			return
		}
	}
	if body != nil {
		p.size = len(body)
	}
	p.etag, p.ctype = etag, ctype
	s.armPublication(p, expires)
	s.publishOK(req, tx, etagAndExpires(etag, secs))
	if body != nil {
		s.notifyAll(r)
	}
}

func (s *Server) unpublish(req *sip.Request, tx sip.ServerTransaction, r *resource, p *publication) {
	if !s.change(req, tx, r, abi.OpUnpublish, p, nil, &store.Batch{DeletePublications: []string{p.id}}) {
		return
	}
	s.removePublication(r, p)
	s.publishOK(req, tx, etagAndExpires(p.etag, 0))
	s.notifyAll(r)
}

// change asks the module about a publication change (body is the new
// body of an OpPublish), commits it with b, and leaves the module's answer
// pending in r until notifyAll; on failure it has answered the request and
// nothing changed. r.mu is held.
func (s *Server) change(req *sip.Request, tx sip.ServerTransaction, r *resource, op abi.Op, p *publication, body []byte, b *store.Batch) bool {
	in := &abi.Publication{ID: p.id}
	if op == abi.OpPublish {
		in.ContentType, in.Body, in.ExpiresUnix = p.ctype, body, p.expires().Unix()
	}
	return s.changeWith(req, tx, r, abi.Request{Op: op, Publication: in}, b)
}

// changeWith is change for any input: the module's answer is staged into
// b, committed, and left in r.pending for notifyAll.
func (s *Server) changeWith(req *sip.Request, tx sip.ServerTransaction, r *resource, in abi.Request, b *store.Batch) bool {
	op := in.Op
	mres, err := s.call(r, in, nil)
	if err != nil {
		if req != nil {
			s.moduleError(req, tx, err)
		}
		return false
	}
	if mres.Code != 0 {
		if req != nil {
			s.refusal(req, tx, r.pkg, mres)
		} else {
			s.log.Warn("module refused a publication change", "op", op.String(), "resource", r.key.uri,
				"code", mres.Code, "reason", mres.Reason)
		}
		return false
	}
	stage(b, r, mres, nil)
	if !s.commit(req, tx, b) {
		return false
	}
	r.pending = mres
	return true
}

// notifyAll applies the module answer left by change and queues a NOTIFY
// for every watcher it rendered for. Called after the 2xx went out, so a
// watcher who is also the publisher sees the 200 first.
func (s *Server) notifyAll(r *resource) {
	if r.pending != nil {
		s.apply(r, r.pending, nil, "")
		r.pending = nil
	}
}

func (s *Server) publishOK(req *sip.Request, tx sip.ServerTransaction, hdrs []sip.Header) {
	s.respond(req, tx, sip.NewResponseFromRequest(req, 200, "OK", nil), "", hdrs...)
}

func etagAndExpires(etag string, secs int) []sip.Header {
	return []sip.Header{sip.NewHeader("SIP-ETag", etag), sip.NewHeader("Expires", strconv.Itoa(secs))}
}

func (s *Server) removePublication(r *resource, p *publication) {
	s.opt.Metrics.Publications(r.key.event, -1)
	s.timers.stop(&p.exp)
	r.removePub(p)
}

// armPublication (re)starts p's expiry timer for at; r.mu is held.
func (s *Server) armPublication(p *publication, at time.Time) {
	s.timers.arm(&p.exp, p, at)
}

func (p *publication) expired(s *Server) { s.expirePublication(p) }

// retryExpiry is how long a publication whose removal the module failed
// stays before the next try; its state must not be dropped silently.
const retryExpiry = 5 * time.Second

// expirePublication removes a publication whose time is up and tells the
// watchers.
func (s *Server) expirePublication(p *publication) {
	r := p.res
	r.mu.Lock()
	defer s.release(r)
	if !r.hasPub(p) || time.Now().Before(p.expires()) {
		return
	}
	if !s.change(nil, nil, r, abi.OpUnpublish, p, nil, &store.Batch{DeletePublications: []string{p.id}}) {
		s.armPublication(p, time.Now().Add(retryExpiry))
		return
	}
	s.removePublication(r, p)
	s.notifyAll(r)
}
