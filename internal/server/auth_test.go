package server_test

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// digest answers a challenge the way a UA does (RFC 7616 §3.4.1, qop=auth).
func digest(challenge, method, uri, user, password string, nc int) string {
	param := func(name string) string {
		m := regexp.MustCompile(name + `="?([^",]+)"?`).FindStringSubmatch(challenge)
		if m == nil {
			return ""
		}
		return m[1]
	}
	realm, nonce, alg := param("realm"), param("nonce"), param("algorithm")
	var h func() hash.Hash = md5.New
	if alg == "SHA-256" {
		h = sha256.New
	}
	hx := func(s string) string { d := h(); d.Write([]byte(s)); return hex.EncodeToString(d.Sum(nil)) }
	cnonce, ncs := "0a4f113b", fmt.Sprintf("%08x", nc)
	resp := hx(hx(user+":"+realm+":"+password) + ":" + nonce + ":" + ncs + ":" + cnonce + ":auth:" + hx(method+":"+uri))
	return fmt.Sprintf(`Authorization: Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s, qop=auth, nc=%s, cnonce="%s"`,
		user, realm, nonce, uri, resp, alg, ncs, cnonce)
}

func TestDigestAuthentication(t *testing.T) {
	dir := t.TempDir()
	users := fmt.Sprintf("alice:example.com:%s:%s\nbob:example.com:%s:%s\n",
		auth.HA1("MD5", "alice", "example.com", "wonderland"), auth.HA1("SHA-256", "alice", "example.com", "wonderland"),
		auth.HA1("MD5", "bob", "example.com", "builder"), auth.HA1("SHA-256", "bob", "example.com", "builder"))
	path := filepath.Join(dir, "users")
	os.WriteFile(path, []byte(users), 0o600)
	u, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Options{Users: u})
	if err != nil {
		t.Fatal(err)
	}
	srv := startWith(t, server.Options{
		Listen:  []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Modules: []*extension.Module{echo(t)},
		Auth: &server.Auth{Authenticator: a, Realms: []string{"example.com"},
			Methods: []string{"PUBLISH", "SUBSCRIBE", "REGISTER"}, OwnerOnly: true},
	})
	p := siptest.NewPeer(t, "UDP", addrOf(srv, "udp"))
	pub := func(resource string, extra ...string) *sip.Response {
		return p.Send(siptest.Request{Method: "PUBLISH", URI: resource, Headers: append([]string{
			"From: <sip:alice@example.com>;tag=a1", "To: <" + resource + ">", "Call-ID: " + siptest.NewCallID(),
			"CSeq: 1 PUBLISH", "Event: echo", "Content-Type: text/plain"}, extra...), Body: "open"})
	}

	r := pub(alice)
	siptest.WantCode(t, r, 401)
	var challenges []string
	for _, h := range r.GetHeaders("WWW-Authenticate") {
		challenges = append(challenges, h.Value())
	}
	if len(challenges) != 2 || !strings.Contains(challenges[0], "SHA-256") || !strings.Contains(challenges[1], "MD5") {
		t.Fatalf("challenges = %v", challenges)
	}
	if n := len(srv.Publications(server.Filter{})); n != 0 {
		t.Fatalf("an unauthenticated PUBLISH stored %d publications", n)
	}
	for i, c := range challenges { // SHA-256 and MD5 both work
		r = pub(alice, digest(c, "PUBLISH", alice, "alice", "wonderland", i+1))
		siptest.WantCode(t, r, 200)
	}
	// the same nc again is a replay
	r = pub(alice, digest(challenges[0], "PUBLISH", alice, "alice", "wonderland", 1))
	siptest.WantCode(t, r, 401)
	// a wrong password
	r = pub(alice, digest(challenges[0], "PUBLISH", alice, "alice", "rabbit", 3))
	siptest.WantCode(t, r, 401)
	if !strings.Contains(siptest.Header(r, "Warning"), "authentication failed") {
		t.Fatalf("Warning = %q", siptest.Header(r, "Warning"))
	}
	// alice may not publish for bob
	bob := "sip:bob@example.com"
	r = pub(bob, digest(challenges[0], "PUBLISH", bob, "alice", "wonderland", 4))
	siptest.WantCode(t, r, 403)
	// nor claim to be bob in From
	r = p.Send(siptest.Request{Method: "PUBLISH", URI: bob, Headers: []string{
		"From: <sip:bob@example.com>;tag=b1", "To: <" + bob + ">", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 PUBLISH",
		"Event: echo", "Content-Type: text/plain", digest(challenges[0], "PUBLISH", bob, "alice", "wonderland", 5)}, Body: "x"})
	siptest.WantCode(t, r, 403) // From bob, credentials of alice
	// other realms are not challenged
	r = p.Send(siptest.Request{Method: "PUBLISH", URI: "sip:zed@other.org", Headers: []string{
		"From: <sip:zed@other.org>;tag=z1", "To: <sip:zed@other.org>", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 PUBLISH",
		"Event: echo", "Content-Type: text/plain"}, Body: "x"})
	siptest.WantCode(t, r, 200)
}
