package auth

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"strings"
)

// The digest algorithms this package knows, spelled as on the wire.
const (
	MD5    = "MD5"
	SHA256 = "SHA-256"
)

// newHash returns the hash for a canonical algorithm name, or nil.
func newHash(alg string) func() hash.Hash {
	switch alg {
	case MD5:
		return md5.New
	case SHA256:
		return sha256.New
	}
	return nil
}

// canonicalAlgorithm maps a wire spelling to MD5 or SHA256, or "" when the
// algorithm is not supported (the -sess variants among them).
func canonicalAlgorithm(s string) string {
	switch {
	case strings.EqualFold(s, MD5):
		return MD5
	case strings.EqualFold(s, SHA256):
		return SHA256
	}
	return ""
}

// digestHex is H(parts joined by ":") in lower-case hex.
func digestHex(newH func() hash.Hash, parts ...string) string {
	h := newH()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// HA1 returns H(user:realm:password) in lower-case hex, the value the users
// file holds for alg ("MD5" or "SHA-256", any case). It returns "" for an
// algorithm this package does not support.
func HA1(alg, user, realm, password string) string {
	newH := newHash(canonicalAlgorithm(alg))
	if newH == nil {
		return ""
	}
	return digestHex(newH, user, realm, password)
}

// Users holds credentials as HA1 hashes, never passwords. It is read-only
// once built, so one value may serve many goroutines.
type Users struct {
	byKey map[userKey]credentials
}

type userKey struct{ user, realm string }

// credentials are the HA1 hashes of one user in one realm, "" where the
// algorithm is not offered.
type credentials struct{ md5, sha256 string }

func (c credentials) ha1(alg string) string {
	if alg == SHA256 {
		return c.sha256
	}
	return c.md5
}

// Len is the number of user and realm pairs.
func (u *Users) Len() int {
	if u == nil {
		return 0
	}
	return len(u.byKey)
}

// HasRealm reports whether any user belongs to realm, so a caller can tell
// a realm without users (a configuration mistake) at start-up.
func (u *Users) HasRealm(realm string) bool {
	if u == nil {
		return false
	}
	for k := range u.byKey {
		if k.realm == realm {
			return true
		}
	}
	return false
}

// lookup returns the HA1 of user in realm for alg, or "" when the user is
// unknown or has no hash for alg.
func (u *Users) lookup(alg, user, realm string) string {
	if u == nil {
		return ""
	}
	return u.byKey[userKey{user, realm}].ha1(alg)
}

// LoadUsers reads a users file (see the package documentation for its
// format).
func LoadUsers(path string) (*Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load users: %w", err)
	}
	return ParseUsers(path, data)
}

// ParseUsers parses the contents of a users file; name is used in errors,
// which read "name:line: what is wrong".
func ParseUsers(name string, data []byte) (*Users, error) {
	u := &Users{byKey: map[userKey]credentials{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, c, err := parseUserLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if _, dup := u.byKey[k]; dup {
			return nil, fmt.Errorf("%s:%d: user %q in realm %q listed twice", name, n, k.user, k.realm)
		}
		u.byKey[k] = c
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	return u, nil
}

// parseUserLine splits "user:realm:md5-ha1:sha256-ha1". The realm is what
// lies between the first colon and the last two, so it may contain colons.
func parseUserLine(line string) (userKey, credentials, error) {
	user, rest, ok := strings.Cut(line, ":")
	i := strings.LastIndexByte(rest, ':')
	j := -1
	if i >= 0 {
		j = strings.LastIndexByte(rest[:i], ':')
	}
	if !ok || j < 0 {
		return userKey{}, credentials{}, fmt.Errorf("want user:realm:md5-ha1:sha256-ha1, got %d field(s)", strings.Count(line, ":")+1)
	}
	k := userKey{user: user, realm: rest[:j]}
	c := credentials{md5: strings.ToLower(rest[j+1 : i]), sha256: strings.ToLower(rest[i+1:])}
	switch {
	case k.user == "":
		return k, c, fmt.Errorf("empty user")
	case k.realm == "":
		return k, c, fmt.Errorf("empty realm for user %q", k.user)
	case c.md5 == "" && c.sha256 == "":
		return k, c, fmt.Errorf("user %q has neither an MD5 nor a SHA-256 HA1", k.user)
	case c.md5 != "" && !isHex(c.md5, md5.Size):
		return k, c, fmt.Errorf("MD5 HA1 of user %q is not %d hex digits", k.user, 2*md5.Size)
	case c.sha256 != "" && !isHex(c.sha256, sha256.Size):
		return k, c, fmt.Errorf("SHA-256 HA1 of user %q is not %d hex digits", k.user, 2*sha256.Size)
	}
	return k, c, nil
}

// isHex reports whether s is exactly n bytes in hex.
func isHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
