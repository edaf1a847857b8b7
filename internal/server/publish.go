package server

import (
	"context"
	"errors"
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

// publish is the event state compositor of RFC 3903: a PUBLISH without
// SIP-If-Match creates a publication; with one it refreshes (no body),
// modifies (a body) or removes (Expires: 0) the publication of that ETag.
// An error it returns has not been answered (answered does).
func (s *Server) publish(req *sip.Request, tx sip.ServerTransaction) error {
	_, ep, err := s.event(req)
	if err != nil {
		return err
	}
	uri, err := s.resourceURI(req)
	if err != nil {
		return err
	}
	secs, given, err := s.expires(req, ep.publication, ep.info.DefaultExpires)
	if err != nil {
		return err
	}
	body := req.Body()
	if max := s.opt.Limits.MaxBodyBytes; max > 0 && len(body) > max {
		return refusef(413, "body of %d bytes is over the limit of %d", len(body), max)
	}
	if len(body) > 0 {
		if err := acceptable(req, ep); err != nil {
			return err
		}
	}
	var etag string
	if h := header.Get(req, "SIP-If-Match"); h != nil {
		etag = strings.TrimSpace(h.Value())
	}
	if etag == "" {
		if len(body) == 0 {
			return refuse(400, "PUBLISH without a body needs SIP-If-Match")
		}
		if secs == 0 {
			return refuse(400, "Expires: 0 without SIP-If-Match removes nothing")
		}
		r := s.lockResource(ep, uri)
		defer s.release(r)
		return s.publishNew(req, tx, r, secs, body)
	}

	// An ETag is looked up among its presentity's publications (one to a
	// few): a server-wide index by ETag was ~45 bytes of every publication.
	// On a shared store, one this node does not hold may be another's.
	var r *resource
	if s.leases != nil {
		r = s.lockResource(ep, uri)
	} else {
		r = s.lockHeld(resourceKey{ep.name, uri}, s.lockSources)
	}
	var p *publication
	if r != nil {
		defer s.release(r)
		if err := s.thaw(r); err != nil {
			return err
		}
		p = r.pubByETag(etag)
		if p == nil && s.leases != nil {
			if p, err = s.adopt(r, etag); err != nil {
				return err
			}
		}
	}
	if p == nil {
		return refusef(412, "no publication with entity-tag %q for %s", etag, uri)
	}
	switch {
	case given && secs == 0:
		c, err := s.unpublish(r, p)
		if errors.Is(err, store.ErrStalePublication) {
			s.removePublication(r, p) // refreshed or removed by another node
			return refusef(412, "publication with entity-tag %q for %s refreshed or removed elsewhere", etag, uri)
		}
		if err != nil {
			return err
		}
		s.publishOK(req, tx, p.etag.String(), 0)
		c.emit()
		return nil
	case len(body) == 0:
		return s.republish(req, tx, r, p, secs, nil)
	default:
		return s.republish(req, tx, r, p, secs, body)
	}
}

// adopt makes the publication of r with that ETag, stored by another
// node, this node's too, or returns nil if none is stored unexpired: a
// client whose proxy routes it here now refreshes, modifies or removes
// its publication instead of publishing anew. A copy held from before
// (an older ETag) is brought up to date. The node that took it drops
// its own copy at that copy's expiry (its ETag is stale then). r.mu is
// held.
func (s *Server) adopt(r *resource, etag string) (*publication, error) {
	ctx := s.storeContext()
	rec, ok, err := s.leases.Publication(ctx, r.key.event, r.key.uri, etag)
	if err == nil && ok && rec.Expires.After(time.Now()) {
		err = s.catchUp(r)
	} else if err == nil {
		return nil, nil
	}
	if err != nil {
		return nil, &storeError{err}
	}
	p := r.pubByID(rec.ID)
	if p == nil {
		p = &publication{id: tokenOf(rec.ID), res: r}
		r.addPub(p)
		s.opt.Metrics.Publications(r.key.event, 1)
	}
	p.etag, p.ctype, p.size = tokenOf(rec.ETag), r.pkg.mediaType(rec.ContentType), int32(rec.Size)
	s.armPublication(p, rec.Expires)
	return p, nil
}

// acceptable checks the body's Content-Type against what the package
// accepts.
func acceptable(req *sip.Request, ep *eventPackage) error {
	ct := header.ContentType(req)
	if ct == "" {
		return refuse(400, "body without Content-Type")
	}
	if !ep.accept[ct] {
		return refuse(415, fmt.Sprintf("%s does not take %s", ep.name, ct),
			sip.NewHeader("Accept", strings.Join(ep.info.Accept, ", ")))
	}
	return nil
}

// publishNew adds a publication to r; r.mu is held.
func (s *Server) publishNew(req *sip.Request, tx sip.ServerTransaction, r *resource, secs int, body []byte) error {
	if max := s.opt.Limits.MaxPublicationsPerPresentity; max > 0 && r.pubCount() >= max {
		return refusef(403, "%s has %d publications, the limit", r.key.uri, max)
	}
	p := &publication{id: newOrderedToken(), etag: newRandomToken(), ctype: r.pkg.mediaType(header.ContentType(req)), size: int32(len(body)), res: r}
	p.exp.at = time.Now().Add(time.Duration(secs) * time.Second).UnixNano()
	c := s.newChange()
	if _, err := c.propose(r, publicationInput(abi.OpPublish, p, body)); err != nil {
		return err
	}
	c.batch.Publications = []store.Publication{p.record()}
	c.then(func() {
		r.addPub(p)
		s.opt.Metrics.Publications(r.key.event, 1)
		s.armPublication(p, p.expires())
	})
	return c.settle(func() { s.publishOK(req, tx, p.etag.String(), secs) })
}

// publicationInput is the module's input for a publication change: its
// body and media type with OpPublish, its id alone with OpUnpublish.
func publicationInput(op abi.Op, p *publication, body []byte) abi.Request {
	in := &abi.Publication{ID: p.id.String()}
	if op == abi.OpPublish {
		in.ContentType, in.Body, in.ExpiresUnix = p.ctype, body, p.expires().Unix()
	}
	return abi.Request{Op: op, Publication: in}
}

// mediaType is ct as the package's Accept list spells it (a string every
// publication of the package shares), or ct.
func (ep *eventPackage) mediaType(ct string) string {
	if i := slices.Index(ep.info.Accept, ct); i >= 0 {
		return ep.info.Accept[i]
	}
	return strings.Clone(ct) // not a part of the PUBLISH's headers, which it would keep
}

// republish refreshes (body nil) or modifies a publication: a new ETag
// either way (RFC 3903 §6), a module call only when the body changed.
func (s *Server) republish(req *sip.Request, tx sip.ServerTransaction, r *resource, p *publication, secs int, body []byte) error {
	next := &publication{id: p.id, etag: newRandomToken(), ctype: p.ctype, size: p.size, res: r}
	next.exp.at = time.Now().Add(time.Duration(secs) * time.Second).UnixNano()
	c := s.newChange()
	if body != nil {
		next.ctype, next.size = r.pkg.mediaType(header.ContentType(req)), int32(len(body))
		if _, err := c.propose(r, publicationInput(abi.OpPublish, next, body)); err != nil {
			return err
		}
		c.batch.Publications = []store.Publication{next.record()}
	} else {
		c.batch.PublicationRefreshes = []store.PublicationRefresh{{ID: p.id.String(), ETag: next.etag.String(), Expires: next.expires(), ResourceID: r.id}}
	}
	c.then(func() {
		p.etag, p.ctype, p.size = next.etag, next.ctype, next.size
		s.armPublication(p, next.expires())
	})
	return c.settle(func() { s.publishOK(req, tx, p.etag.String(), secs) })
}

// unpublish removes p from r (a PUBLISH with Expires: 0, an expiry, an
// operator), committed and applied; the caller emits. r.mu is held.
func (s *Server) unpublish(r *resource, p *publication) (*change, error) {
	c := s.newChange()
	if _, err := c.propose(r, publicationInput(abi.OpUnpublish, p, nil)); err != nil {
		return nil, err
	}
	c.batch.DeletePublications = []store.PublicationRef{{ID: p.id.String(), ETag: p.etag.String(), ResourceID: r.id}}
	c.then(func() {
		if r.hasPub(p) { // not if p is another node's (expireLeft)
			s.removePublication(r, p)
		}
	})
	if err := c.commit(); err != nil {
		return nil, err
	}
	c.apply()
	return c, nil
}

func (s *Server) publishOK(req *sip.Request, tx sip.ServerTransaction, etag string, secs int) {
	s.replyOK(req, tx, "", sip.NewHeader("SIP-ETag", etag), sip.NewHeader("Expires", strconv.Itoa(secs)))
}

func (s *Server) removePublication(r *resource, p *publication) {
	s.opt.Metrics.Publications(r.key.event, -1)
	s.timers.stop(p)
	r.removePub(p)
}

// armPublication (re)starts p's expiry timer for at; r.mu is held.
func (s *Server) armPublication(p *publication, at time.Time) {
	s.timers.arm(p, at)
}

func (p *publication) expired(s *Server) { s.expirePublication(p) }
func (p *publication) due() *expiry      { return &p.exp }

// retryExpiry is how long a subscription, publication or binding whose
// removal failed (the module or the store) stays before the next try: its
// state must not be dropped silently.
const retryExpiry = 5 * time.Second

// expirePublication removes a publication whose time is up and tells the
// watchers.
func (s *Server) expirePublication(p *publication) {
	r := p.res
	s.lock(r)
	defer s.release(r)
	s.expireLocked(r, p)
}

// expireLocked is expirePublication once r.mu is held.
func (s *Server) expireLocked(r *resource, p *publication) {
	if !r.hasPub(p) || time.Now().Before(p.expires()) {
		return
	}
	c, err := s.unpublish(r, p)
	if errors.Is(err, store.ErrStalePublication) {
		// Another node refreshed it (it is that node's now) or removed it:
		// this node held a copy, from its restore or taken on (adopt).
		s.removePublication(r, p)
		return
	}
	if err != nil {
		s.log.Warn("expired publication not removed, tried again later", "resource", r.key.uri, "err", err)
		s.armPublication(p, time.Now().Add(retryExpiry))
		return
	}
	c.emit()
}

// expireLeft removes, through the one change path, every publication
// whose expiry passed a lease ago or more: a node removes its own at
// their expiry (expirePublication), so those are a dead node's, whose
// watchers would otherwise be shown them until a node starts. The
// removal names the ETag read: one its node refreshed meanwhile is not
// removed (store.ErrStalePublication), nor one another node removed
// first. One this node holds under the same ETag is left to its own
// timer.
func (s *Server) expireLeft(ctx context.Context) error {
	left, err := s.leases.Expired(ctx, time.Now().Add(-s.lease()))
	if err != nil {
		return err
	}
	for _, rec := range left {
		ep := s.cat().packages[rec.Event]
		if ep == nil {
			continue // left in the store, as at restore
		}
		r := s.lockResource(ep, rec.Resource)
		if p := r.pubByID(rec.ID); p != nil {
			if p.etag.String() == rec.ETag {
				s.release(r)
				continue
			}
			s.removePublication(r, p) // a copy gone stale: refreshed since on a node gone
		}
		err := s.catchUp(r)
		if err == nil {
			var c *change
			if c, err = s.unpublish(r, &publication{id: tokenOf(rec.ID), etag: tokenOf(rec.ETag), res: r}); err == nil {
				c.emit()
				s.log.Info("publication of a node gone removed at its expiry", "resource", rec.Resource, "expired", rec.Expires)
			}
		}
		s.release(r)
		if err != nil && !errors.Is(err, store.ErrStalePublication) {
			return err
		}
	}
	return nil
}
