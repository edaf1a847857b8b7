package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTestAuth(t testing.TB, opt Options) (*Authenticator, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	if opt.Users == nil {
		u, err := LoadUsers(filepath.Join("testdata", "users"))
		if err != nil {
			t.Fatal(err)
		}
		opt.Users = u
	}
	if opt.Secret == nil {
		opt.Secret = []byte("test secret")
	}
	opt.Now = clk.now
	a, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	return a, clk
}

// The client side, written from RFC 7616 §3.4.1 independently of the
// package: response = H(H(user:realm:password):nonce:nc:cnonce:qop:H(method:uri)).
func clientHash(alg, s string) string {
	if alg == SHA256 {
		return fmt.Sprintf("%x", sha256.Sum256([]byte(s)))
	}
	return fmt.Sprintf("%x", md5.Sum([]byte(s)))
}

func clientResponse(alg, user, realm, password, method, uri, nonce, nc, cnonce string) string {
	ha1 := clientHash(alg, user+":"+realm+":"+password)
	ha2 := clientHash(alg, method+":"+uri)
	return clientHash(alg, ha1+":"+nonce+":"+nc+":"+cnonce+":auth:"+ha2)
}

var challengeParam = regexp.MustCompile(`(\w+)=(?:"([^"]*)"|([^,\s]+))`)

// login answers challenge as a client would.
type login struct {
	user, password, method, uri, nc, cnonce string
}

func (l login) answer(t testing.TB, challenge string) string {
	t.Helper()
	p := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(challenge, -1) {
		p[m[1]] = m[2] + m[3]
	}
	if p["qop"] != "auth" || p["nonce"] == "" || p["realm"] == "" {
		t.Fatalf("challenge %q lacks qop=auth, nonce or realm", challenge)
	}
	if l.method == "" {
		l.method = "PUBLISH"
	}
	if l.uri == "" {
		l.uri = "sip:" + l.user + "@example.com"
	}
	if l.nc == "" {
		l.nc = "00000001"
	}
	if l.cnonce == "" {
		l.cnonce = "0a4f113b"
	}
	resp := clientResponse(p["algorithm"], l.user, p["realm"], l.password, l.method, l.uri, p["nonce"], l.nc, l.cnonce)
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s, cnonce="%s", qop=auth, nc=%s`,
		l.user, p["realm"], p["nonce"], l.uri, resp, p["algorithm"], l.cnonce, l.nc)
}

// challengeFor returns the challenge value offering alg.
func challengeFor(t testing.TB, a *Authenticator, realm, alg string) string {
	t.Helper()
	for _, c := range a.Challenge(realm, false) {
		if strings.Contains(c, "algorithm="+alg+",") {
			return c
		}
	}
	t.Fatalf("no %s challenge in %q", alg, a.Challenge(realm, false))
	return ""
}

func TestPublishedVectors(t *testing.T) {
	for _, v := range []struct {
		name, alg, user, realm, password, nonce, cnonce, want string
	}{
		{"RFC 2617 §3.5", MD5, "Mufasa", "testrealm@host.com", "Circle Of Life",
			"dcd98b7102dd2f0e8b11d0f600bfb0c093", "0a4f113b", "6629fae49393a05397450978507c4ef1"},
		{"RFC 7616 §3.9.1 MD5", MD5, "Mufasa", "http-auth@example.org", "Circle of Life",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "8ca523f5e9506fed4657c9700eebdbec"},
		{"RFC 7616 §3.9.1 SHA-256", SHA256, "Mufasa", "http-auth@example.org", "Circle of Life",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	} {
		t.Run(v.name, func(t *testing.T) {
			if got := clientResponse(v.alg, v.user, v.realm, v.password, "GET", "/dir/index.html", v.nonce, "00000001", v.cnonce); got != v.want {
				t.Fatalf("test client computes %s, RFC says %s", got, v.want)
			}
			users, err := ParseUsers("vector", []byte(fmt.Sprintf("%s:%s:%s:%s\n", v.user, v.realm,
				HA1(MD5, v.user, v.realm, v.password), HA1(SHA256, v.user, v.realm, v.password))))
			if err != nil {
				t.Fatal(err)
			}
			a, _ := newTestAuth(t, Options{Users: users})
			hdr := func(response string) []string {
				return []string{fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="%s", response="%s", algorithm=%s, opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
					v.user, v.realm, v.nonce, v.cnonce, response, v.alg)}
			}
			// The RFC's nonce is not one of ours, so a right response
			// earns a stale challenge and a wrong one a refusal.
			if _, err := a.Verify("GET", "/dir/index.html", v.realm, hdr(v.want)); !errors.Is(err, ErrStale) {
				t.Errorf("published response: %v, want ErrStale", err)
			}
			wrong := "0" + v.want[1:]
			if wrong == v.want {
				wrong = "1" + v.want[1:]
			}
			if _, err := a.Verify("GET", "/dir/index.html", v.realm, hdr(wrong)); !errors.Is(err, ErrUnauthorized) {
				t.Errorf("altered response: %v, want ErrUnauthorized", err)
			}
		})
	}
}

func TestChallenge(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	ch := a.Challenge(`ex"ample`, false)
	if len(ch) != 2 || !strings.Contains(ch[0], "algorithm=SHA-256,") || !strings.Contains(ch[1], "algorithm=MD5,") {
		t.Fatalf("Challenge = %q, want SHA-256 then MD5", ch)
	}
	for _, c := range ch {
		_, p, err := parseAuthorization(c)
		if err != nil || p["realm"] != `ex"ample` || p["qop"] != "auth" || p["nonce"] == "" || p["stale"] != "" {
			t.Errorf("challenge %q parses as %v, %v", c, p, err)
		}
	}
	if c := a.Challenge("example.com", true)[0]; !strings.HasSuffix(c, ", stale=true") {
		t.Errorf("stale challenge %q lacks stale=true", c)
	}
	if a.Challenge("r", false)[0] == a.Challenge("r", false)[0] {
		t.Error("two challenges share a nonce")
	}
	b, _ := newTestAuth(t, Options{Algorithms: []string{"md5"}})
	if ch := b.Challenge("r", false); len(ch) != 1 || !strings.Contains(ch[0], "algorithm=MD5,") {
		t.Errorf("MD5-only Challenge = %q", ch)
	}
	if _, err := New(Options{Algorithms: []string{"SHA-512-256"}}); err == nil {
		t.Error("New accepted an unsupported algorithm")
	}
}

func TestVerifyHappyPaths(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	for _, c := range []struct {
		alg, user, realm, password string
	}{
		{SHA256, "alice", "example.com", "wonderland"},
		{MD5, "alice", "example.com", "wonderland"},
		{SHA256, "carol", "example.com", "sha-only"},
		{MD5, "dave", "example.com", "md5-only"},
		{SHA256, "erin", "example.com:5061", "colon"},
		{MD5, "alice", "other.example", "wonderland"},
	} {
		l := login{user: c.user, password: c.password}
		hdr := l.answer(t, challengeFor(t, a, c.realm, c.alg))
		user, err := a.Verify("PUBLISH", "sip:"+c.user+"@example.com", c.realm, []string{hdr})
		if err != nil || user != c.user {
			t.Errorf("%s %s@%s: Verify = %q, %v", c.alg, c.user, c.realm, user, err)
		}
	}
}

func TestVerifyAbsentAlgorithmIsMD5(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	l := login{user: "alice", password: "wonderland"}
	hdr := strings.Replace(l.answer(t, challengeFor(t, a, "example.com", MD5)), ", algorithm=MD5", "", 1)
	if user, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{hdr}); err != nil || user != "alice" {
		t.Errorf("Verify without algorithm = %q, %v", user, err)
	}
	// Without algorithm a SHA-256 response is read as MD5 and fails.
	hdr = strings.Replace(l.answer(t, challengeFor(t, a, "example.com", SHA256)), ", algorithm=SHA-256", "", 1)
	if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{hdr}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("SHA-256 response without algorithm: %v, want ErrUnauthorized", err)
	}
}

func TestVerifyStale(t *testing.T) {
	a, clk := newTestAuth(t, Options{NonceTTL: time.Minute})
	ch := challengeFor(t, a, "example.com", SHA256)
	l := login{user: "alice", password: "wonderland"}
	clk.advance(59 * time.Second)
	if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{l.answer(t, ch)}); err != nil {
		t.Fatalf("nonce within its TTL: %v", err)
	}
	clk.advance(2 * time.Second)
	l.nc = "00000002"
	if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{l.answer(t, ch)}); !errors.Is(err, ErrStale) {
		t.Errorf("nonce past its TTL: %v, want ErrStale", err)
	}
	// Stale is only for a client that knows the password.
	l.password = "guess"
	if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{l.answer(t, ch)}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("old nonce, wrong password: %v, want ErrUnauthorized", err)
	}
}

func TestVerifyReplay(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	ch := challengeFor(t, a, "example.com", MD5)
	verify := func(nc string) error {
		l := login{user: "alice", password: "wonderland", nc: nc}
		_, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{l.answer(t, ch)})
		return err
	}
	for _, step := range []struct {
		nc   string
		want error
	}{
		{"00000001", nil},
		{"00000001", ErrReplay},
		{"00000002", nil},
		{"00000001", ErrReplay},
		{"0000000A", nil}, // a client may skip counts
		{"00000009", ErrReplay},
		{"0000000b", nil},
	} {
		if err := verify(step.nc); !errors.Is(err, step.want) || (step.want == nil && err != nil) {
			t.Errorf("nc=%s: %v, want %v", step.nc, err, step.want)
		}
	}
	// Another challenge starts its own count.
	l := login{user: "alice", password: "wonderland"}
	if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{l.answer(t, challengeFor(t, a, "example.com", MD5))}); err != nil {
		t.Errorf("fresh nonce, nc=1: %v", err)
	}
}

func TestVerifyRefusals(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	const uri = "sip:alice@example.com"
	good := login{user: "alice", password: "wonderland"}
	sha := challengeFor(t, a, "example.com", SHA256)
	md := challengeFor(t, a, "example.com", MD5)
	for _, c := range []struct {
		name   string
		method string
		realm  string
		hdr    string
		want   error
	}{
		{"wrong password", "PUBLISH", "example.com", login{user: "alice", password: "wonderlend"}.answer(t, sha), ErrUnauthorized},
		{"unknown user", "PUBLISH", "example.com", login{user: "mallory", password: "x", uri: uri}.answer(t, sha), ErrUnauthorized},
		{"user of another realm", "PUBLISH", "example.com", login{user: "erin", password: "colon", uri: uri}.answer(t, sha), ErrUnauthorized},
		{"no SHA-256 hash", "PUBLISH", "example.com", login{user: "dave", password: "md5-only", uri: uri}.answer(t, sha), ErrUnauthorized},
		{"no MD5 hash", "PUBLISH", "example.com", login{user: "carol", password: "sha-only", uri: uri}.answer(t, md), ErrUnauthorized},
		{"other method", "SUBSCRIBE", "example.com", good.answer(t, sha), ErrUnauthorized},
		{"other uri", "PUBLISH", "example.com", login{user: "alice", password: "wonderland", uri: "sip:bob@example.com"}.answer(t, sha), ErrUnauthorized},
		{"credentials for another realm", "PUBLISH", "other.example", good.answer(t, sha), ErrNoCredentials},
		{"no header", "PUBLISH", "example.com", "", ErrNoCredentials},
		{"Basic", "PUBLISH", "example.com", "Basic YWxpY2U6d29uZGVybGFuZA==", ErrNoCredentials},
		{"qop auth-int", "PUBLISH", "example.com", strings.Replace(good.answer(t, sha), "qop=auth", "qop=auth-int", 1), ErrUnauthorized},
		{"no qop", "PUBLISH", "example.com", strings.Replace(good.answer(t, sha), ", qop=auth", "", 1), ErrUnauthorized},
		{"MD5-sess", "PUBLISH", "example.com", strings.Replace(good.answer(t, md), "algorithm=MD5", "algorithm=MD5-sess", 1), ErrUnauthorized},
		{"userhash", "PUBLISH", "example.com", good.answer(t, sha) + ", userhash=true", ErrUnauthorized},
		{"nc zero", "PUBLISH", "example.com", login{user: "alice", password: "wonderland", nc: "00000000"}.answer(t, sha), ErrUnauthorized},
		{"nc not hex", "PUBLISH", "example.com", login{user: "alice", password: "wonderland", nc: "0000000g"}.answer(t, sha), ErrUnauthorized},
		{"nc too long", "PUBLISH", "example.com", login{user: "alice", password: "wonderland", nc: "000000001"}.answer(t, sha), ErrUnauthorized},
		{"no cnonce", "PUBLISH", "example.com", strings.Replace(good.answer(t, sha), `cnonce="0a4f113b"`, `cnonce=""`, 1), ErrUnauthorized},
		{"response not hex", "PUBLISH", "example.com", regexp.MustCompile(`response="[^"]*"`).ReplaceAllString(good.answer(t, md), `response="zz"`), ErrUnauthorized},
		{"malformed", "PUBLISH", "example.com", `Digest username="alice", realm="example.com`, ErrUnauthorized},
	} {
		var hdrs []string
		if c.hdr != "" {
			hdrs = []string{c.hdr}
		}
		user, err := a.Verify(c.method, uri, c.realm, hdrs)
		if !errors.Is(err, c.want) || user != "" {
			t.Errorf("%s: Verify = %q, %v; want %v", c.name, user, err, c.want)
		}
	}
	// None of the refusals used up alice's nonce.
	if _, err := a.Verify("PUBLISH", uri, "example.com", []string{good.answer(t, sha)}); err != nil {
		t.Errorf("good credentials after the refusals: %v", err)
	}
}

func TestVerifyAlgorithmNotOffered(t *testing.T) {
	a, _ := newTestAuth(t, Options{Algorithms: []string{SHA256}})
	b, _ := newTestAuth(t, Options{}) // same secret, so its nonces are good for a
	l := login{user: "alice", password: "wonderland"}
	hdr := l.answer(t, challengeFor(t, b, "example.com", MD5))
	if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{hdr}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("MD5 when only SHA-256 is offered: %v, want ErrUnauthorized", err)
	}
}

func TestVerifyTamperedNonce(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	ch := challengeFor(t, a, "example.com", SHA256)
	nonce := regexp.MustCompile(`nonce="([^"]*)"`).FindStringSubmatch(ch)[1]
	flipped := []byte(nonce)
	flipped[3] ^= 1 // an earlier issue time, say
	tampered := strings.Replace(ch, nonce, string(flipped), 1)
	l := login{user: "alice", password: "wonderland"}

	// The client knows the password but the nonce is not ours: renew it.
	if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{l.answer(t, tampered)}); !errors.Is(err, ErrStale) {
		t.Errorf("tampered nonce, response made for it: %v, want ErrStale", err)
	}
	// The response was made for the real nonce: it does not match.
	hdr := strings.Replace(l.answer(t, ch), nonce, string(flipped), 1)
	if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{hdr}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("tampered nonce, response of the real one: %v, want ErrUnauthorized", err)
	}
	// A nonce made for one realm is not good in another.
	other := strings.ReplaceAll(challengeFor(t, a, "other.example", SHA256), "other.example", "example.com")
	if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{l.answer(t, other)}); !errors.Is(err, ErrStale) {
		t.Errorf("nonce of another realm: %v, want ErrStale", err)
	}
}

func TestVerifyAcrossRestart(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	hdr := login{user: "alice", password: "wonderland"}.answer(t, challengeFor(t, a, "example.com", SHA256))
	b, _ := newTestAuth(t, Options{}) // the same Secret
	if _, err := b.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{hdr}); err != nil {
		t.Errorf("same secret: %v", err)
	}
	c, _ := newTestAuth(t, Options{Secret: []byte{}}) // random
	if _, err := c.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{hdr}); !errors.Is(err, ErrStale) {
		t.Errorf("random secret: %v, want ErrStale", err)
	}
}

func TestVerifyPicksRealm(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	l := login{user: "alice", password: "wonderland"}
	hdrs := []string{
		`Digest username="alice", realm="proxy.example", nonce="x", uri="sip:alice@example.com", response="00"`,
		"Basic YWxpY2U=",
		`not ( credentials`,
		l.answer(t, challengeFor(t, a, "example.com", SHA256)),
	}
	if user, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", hdrs); err != nil || user != "alice" {
		t.Errorf("Verify = %q, %v", user, err)
	}
}

func TestVerifyURICase(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	hdr := login{user: "alice", password: "wonderland", uri: "SIP:alice@Example.COM"}.answer(t, challengeFor(t, a, "example.com", MD5))
	if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{hdr}); err != nil {
		t.Errorf("uri differing in case: %v", err)
	}
}

func TestSetUsers(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	u, err := ParseUsers("new", []byte("zed:example.com::"+HA1(SHA256, "zed", "example.com", "pw")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	a.SetUsers(u)
	verify := func(l login) error {
		_, err := a.Verify("PUBLISH", l.uri, "example.com", []string{l.answer(t, challengeFor(t, a, "example.com", SHA256))})
		return err
	}
	if err := verify(login{user: "zed", password: "pw", uri: "sip:zed@example.com"}); err != nil {
		t.Errorf("new user: %v", err)
	}
	if err := verify(login{user: "alice", password: "wonderland", uri: "sip:alice@example.com"}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("removed user: %v, want ErrUnauthorized", err)
	}
	a.SetUsers(nil)
	if err := verify(login{user: "zed", password: "pw", uri: "sip:zed@example.com"}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("no users: %v, want ErrUnauthorized", err)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	a, _ := newTestAuth(t, Options{})
	ch := challengeFor(t, a, "example.com", SHA256)
	// 16 goroutines race the same nc of one nonce: exactly one wins.
	hdr := login{user: "alice", password: "wonderland"}.answer(t, ch)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 16 {
		wg.Go(func() {
			if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", []string{hdr}); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, ErrReplay) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d goroutines accepted the same nc, want 1", wins)
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{SHA256, MD5} {
		b.Run(alg, func(b *testing.B) {
			a, _ := newTestAuth(b, Options{})
			ch := challengeFor(b, a, "example.com", alg)
			hdrs := make([][]string, b.N)
			for i := range hdrs {
				hdrs[i] = []string{login{user: "alice", password: "wonderland", nc: fmt.Sprintf("%08x", i+1)}.answer(b, ch)}
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := a.Verify("PUBLISH", "sip:alice@example.com", "example.com", hdrs[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
