package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync"
	"time"
)

// A nonce is base64url(issued || salt || mac): issued is the Unix time in
// nanoseconds (8 bytes, big-endian), salt 8 random bytes so that two
// challenges never share a nonce (and so never share an nc sequence), and
// mac the first 16 bytes of HMAC-SHA256(secret, issued || salt || realm).
const (
	nonceTimeLen = 8
	nonceSaltLen = 8
	nonceMACLen  = 16
	nonceRawLen  = nonceTimeLen + nonceSaltLen + nonceMACLen
)

var nonceEncoding = base64.RawURLEncoding

// nonces makes and checks stateless nonces bound to a realm.
type nonces struct {
	secret []byte
}

func (n nonces) mac(head []byte, realm string) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write(head)
	m.Write([]byte(realm))
	return m.Sum(nil)[:nonceMACLen]
}

// make returns a fresh nonce for realm issued at now.
func (n nonces) make(realm string, now time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:nonceTimeLen], uint64(now.UnixNano()))
	rand.Read(raw[nonceTimeLen : nonceTimeLen+nonceSaltLen])
	head := raw[:nonceTimeLen+nonceSaltLen]
	copy(raw[len(head):], n.mac(head, realm))
	return nonceEncoding.EncodeToString(raw[:])
}

// errForeignNonce means a nonce this secret did not make for this realm:
// forged, tampered with, or made before a restart with a random secret.
var errForeignNonce = errors.New("nonce not issued here")

// check returns when a nonce was issued, or errForeignNonce.
func (n nonces) check(nonce, realm string) (time.Time, error) {
	if nonceEncoding.EncodedLen(nonceRawLen) != len(nonce) {
		return time.Time{}, errForeignNonce
	}
	raw, err := nonceEncoding.DecodeString(nonce)
	if err != nil || len(raw) != nonceRawLen {
		return time.Time{}, errForeignNonce
	}
	head := raw[:nonceTimeLen+nonceSaltLen]
	if !hmac.Equal(raw[len(head):], n.mac(head, realm)) {
		return time.Time{}, errForeignNonce
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(raw[:nonceTimeLen]))), nil
}

// replayGuard remembers the highest nc seen for each nonce in use, with a
// bounded number of entries. A nonce loses its entry when it expires or,
// when the map is full, oldest first; in the second case floor moves up to
// its issue time, and any nonce issued at or before floor that has no entry
// is refused as stale, so eviction never reopens a replay.
type replayGuard struct {
	mu        sync.Mutex
	max       int
	ttl       time.Duration
	seen      map[string]seenNonce
	order     []string // nonces in the order of first use, for eviction
	floor     time.Time
	lastSweep time.Time
}

type seenNonce struct {
	nc     uint64
	issued time.Time
}

func newReplayGuard(max int, ttl time.Duration) *replayGuard {
	return &replayGuard{max: max, ttl: ttl, seen: map[string]seenNonce{}}
}

// use records nc for nonce (issued at issued) and returns ErrReplay when
// nc is not above the last one seen, or ErrStale when the nonce's entry
// was evicted.
func (g *replayGuard) use(nonce string, issued time.Time, nc uint64, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.lastSweep) > g.ttl {
		g.sweep(now)
	}
	if e, ok := g.seen[nonce]; ok {
		if nc <= e.nc {
			return ErrReplay
		}
		e.nc = nc
		g.seen[nonce] = e
		return nil
	}
	if !issued.After(g.floor) {
		return ErrStale
	}
	if len(g.seen) >= g.max {
		g.sweep(now)
		g.evict(g.max - g.max/10 - 1)
	}
	g.seen[nonce] = seenNonce{nc: nc, issued: issued}
	g.order = append(g.order, nonce)
	return nil
}

// sweep drops the entries of expired nonces, which are refused as stale
// before they get here, and compacts order.
func (g *replayGuard) sweep(now time.Time) {
	g.lastSweep = now
	kept := g.order[:0]
	for _, nonce := range g.order {
		if now.Sub(g.seen[nonce].issued) > g.ttl {
			delete(g.seen, nonce)
			continue
		}
		kept = append(kept, nonce)
	}
	clear(g.order[len(kept):])
	g.order = kept
}

// evict drops the oldest entries until at most keep remain.
func (g *replayGuard) evict(keep int) {
	keep = max(keep, 0)
	n := len(g.order) - keep
	if n <= 0 {
		return
	}
	for _, nonce := range g.order[:n] {
		if e := g.seen[nonce]; e.issued.After(g.floor) {
			g.floor = e.issued
		}
		delete(g.seen, nonce)
	}
	g.order = append(g.order[:0], g.order[n:]...)
}
