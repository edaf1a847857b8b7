package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Verify's errors. All but ErrStale mean: answer 401 with a fresh
// challenge; ErrStale means the same with stale=true. Errors that Verify
// returns wrap one of these with the detail a log reader needs.
var (
	ErrNoCredentials = errors.New("no digest credentials for the realm")
	ErrStale         = errors.New("nonce is stale")
	ErrReplay        = errors.New("nonce count replayed")
	ErrUnauthorized  = errors.New("credentials refused")
)

// Defaults for Options.
const (
	DefaultNonceTTL   = 5 * time.Minute
	DefaultMaxNonces  = 100_000
	defaultSecretSize = 32
)

// DefaultAlgorithms is the order of challenges when Options.Algorithms is
// empty: SHA-256 first, as RFC 8760 asks of a UAS.
var DefaultAlgorithms = []string{SHA256, MD5}

// Options configure an Authenticator. The zero value of each field means
// its default.
type Options struct {
	Users      *Users
	NonceTTL   time.Duration    // age at which a nonce is stale; default 5m
	Algorithms []string         // offered, in preference order; default DefaultAlgorithms
	Secret     []byte           // HMAC key for nonces; random if empty (nonces then do not survive a restart)
	MaxNonces  int              // nonces tracked for replay; default 100,000
	Now        func() time.Time // clock, for tests; default time.Now
}

// Authenticator issues digest challenges and checks the answers. It is
// safe for concurrent use.
type Authenticator struct {
	users      atomic.Pointer[Users]
	ttl        time.Duration
	algorithms []string
	nonces     nonces
	replay     *replayGuard
	now        func() time.Time
}

// New returns an Authenticator for opt. It fails on an algorithm it does
// not support, so a typo in configuration is found at start-up.
func New(opt Options) (*Authenticator, error) {
	a := &Authenticator{ttl: opt.NonceTTL, now: opt.Now}
	if a.ttl <= 0 {
		a.ttl = DefaultNonceTTL
	}
	if a.now == nil {
		a.now = time.Now
	}
	algs := opt.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms
	}
	for _, s := range algs {
		alg := canonicalAlgorithm(s)
		if alg == "" {
			return nil, fmt.Errorf("digest algorithm %q: want %s or %s", s, SHA256, MD5)
		}
		if !slices.Contains(a.algorithms, alg) {
			a.algorithms = append(a.algorithms, alg)
		}
	}
	secret := opt.Secret
	if len(secret) == 0 {
		secret = make([]byte, defaultSecretSize)
		rand.Read(secret)
	}
	a.nonces = nonces{secret: append([]byte(nil), secret...)}
	maxNonces := opt.MaxNonces
	if maxNonces <= 0 {
		maxNonces = DefaultMaxNonces
	}
	a.replay = newReplayGuard(maxNonces, a.ttl)
	a.users.Store(opt.Users)
	return a, nil
}

// SetUsers replaces the users, for a reload of the users file; requests
// under way finish with the users they started with.
func (a *Authenticator) SetUsers(u *Users) { a.users.Store(u) }

// Challenge returns the values of the WWW-Authenticate (or
// Proxy-Authenticate) headers for realm, one per algorithm in preference
// order, all with the same fresh nonce. stale=true tells the client that
// its credentials were right and only the nonce was old.
func (a *Authenticator) Challenge(realm string, stale bool) []string {
	nonce := a.nonces.make(realm, a.now())
	out := make([]string, 0, len(a.algorithms))
	for _, alg := range a.algorithms {
		v := "Digest realm=" + quote(realm) + ", nonce=" + quote(nonce) +
			", algorithm=" + alg + `, qop="auth"`
		if stale {
			v += ", stale=true"
		}
		out = append(out, v)
	}
	return out
}

// Verify checks the Authorization (or Proxy-Authorization) header values
// of a request with method and requestURI against realm and returns the
// authenticated user. It uses the first Digest value for realm and
// ignores the others, which belong to other realms. The error wraps
// ErrNoCredentials, ErrStale, ErrReplay or ErrUnauthorized.
//
// requestURI is compared with the credentials' uri parameter ignoring
// case, so a caller may pass the Request-URI as its SIP stack re-renders it.
func (a *Authenticator) Verify(method, requestURI, realm string, authorization []string) (user string, err error) {
	p, err := pick(realm, authorization)
	if err != nil {
		return "", err
	}
	user = p["username"]
	c, err := a.check(p, realm)
	if err != nil {
		return "", fmt.Errorf("user %q: %w", user, err)
	}
	if !strings.EqualFold(c.uri, requestURI) {
		return "", fmt.Errorf("user %q: %w: uri %q is not the Request-URI %q", user, ErrUnauthorized, c.uri, requestURI)
	}

	// An unknown user or algorithm costs the same hashing as a known one,
	// so the time of the answer does not tell which users exist.
	ha1 := a.users.Load().lookup(c.alg, user, realm)
	known := ha1 != ""
	if !known {
		ha1 = strings.Repeat("0", 2*newHash(c.alg)().Size())
	}
	newH := newHash(c.alg)
	want := digestHex(newH, ha1, c.nonce, c.ncText, c.cnonce, "auth", digestHex(newH, method, c.uri))
	got, err := hex.DecodeString(strings.ToLower(c.response))
	wantRaw, _ := hex.DecodeString(want)
	match := err == nil && subtle.ConstantTimeCompare(got, wantRaw) == 1
	switch {
	case !known:
		return "", fmt.Errorf("user %q: %w: no %s credentials in realm %q", user, ErrUnauthorized, c.alg, realm)
	case !match:
		return "", fmt.Errorf("user %q: %w: wrong response (wrong password?)", user, ErrUnauthorized)
	}

	// The response is right, so the client knows the password: a nonce we
	// cannot vouch for only needs renewing (RFC 7616 §3.3, stale).
	now := a.now()
	issued, err := a.nonces.check(c.nonce, realm)
	if err != nil {
		return "", fmt.Errorf("user %q: %w: %v", user, ErrStale, err)
	}
	if now.Sub(issued) > a.ttl {
		return "", fmt.Errorf("user %q: %w: issued %v ago", user, ErrStale, now.Sub(issued).Round(time.Second))
	}
	if err := a.replay.use(c.nonce, issued, c.nc, now); err != nil {
		return "", fmt.Errorf("user %q: %w (nc %s)", user, err, c.ncText)
	}
	return user, nil
}

// pick returns the parameters of the first Digest credentials for realm.
func pick(realm string, authorization []string) (map[string]string, error) {
	var bad error
	for _, v := range authorization {
		scheme, p, err := parseAuthorization(v)
		if err != nil {
			if bad == nil {
				bad = err
			}
			continue
		}
		if strings.EqualFold(scheme, "Digest") && p["realm"] == realm {
			return p, nil
		}
	}
	if bad != nil {
		return nil, fmt.Errorf("%w: malformed credentials: %v", ErrUnauthorized, bad)
	}
	return nil, ErrNoCredentials
}

// digestCredentials are the checked parameters of Digest credentials.
type digestCredentials struct {
	alg, nonce, uri, cnonce, response string
	ncText                            string
	nc                                uint64
}

// check validates the parameters that do not depend on the user.
func (a *Authenticator) check(p map[string]string, realm string) (digestCredentials, error) {
	c := digestCredentials{
		nonce: p["nonce"], uri: p["uri"], cnonce: p["cnonce"],
		response: p["response"], ncText: p["nc"],
	}
	for _, name := range []string{"username", "nonce", "uri", "response", "cnonce", "nc"} {
		if p[name] == "" {
			return c, fmt.Errorf("%w: no %s parameter", ErrUnauthorized, name)
		}
	}
	algText, ok := p["algorithm"]
	if !ok {
		algText = MD5 // RFC 2617 §3.2.1: absent means MD5
	}
	c.alg = canonicalAlgorithm(algText)
	if c.alg == "" || !slices.Contains(a.algorithms, c.alg) {
		return c, fmt.Errorf("%w: algorithm %q not offered", ErrUnauthorized, algText)
	}
	switch qop, ok := p["qop"]; {
	case !ok:
		return c, fmt.Errorf("%w: no qop (RFC 2069 digest is not accepted)", ErrUnauthorized)
	case !strings.EqualFold(qop, "auth"):
		return c, fmt.Errorf("%w: qop %q not offered", ErrUnauthorized, qop)
	}
	if strings.EqualFold(p["userhash"], "true") {
		return c, fmt.Errorf("%w: userhash not supported", ErrUnauthorized)
	}
	nc, err := strconv.ParseUint(c.ncText, 16, 32)
	if err != nil || len(c.ncText) > 8 || nc == 0 {
		return c, fmt.Errorf("%w: bad nc %q", ErrUnauthorized, c.ncText)
	}
	c.nc = nc
	return c, nil
}
