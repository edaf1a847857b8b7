package auth

import (
	"path/filepath"
	"strings"
	"testing"
)

// testdata/users was written with md5sum and sha256sum as doc.go tells
// operators to, so agreeing with it checks HA1 and the one-liner both.
func TestLoadUsers(t *testing.T) {
	u, err := LoadUsers(filepath.Join("testdata", "users"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Len() != 6 {
		t.Errorf("Len = %d, want 6", u.Len())
	}
	for _, c := range []struct {
		user, realm, password string
		md5, sha256           bool
	}{
		{"alice", "example.com", "wonderland", true, true},
		{"bob", "example.com", "builder", true, true},
		{"carol", "example.com", "sha-only", false, true},
		{"dave", "example.com", "md5-only", true, false},
		{"erin", "example.com:5061", "colon", true, true},
		{"alice", "other.example", "wonderland", true, true},
	} {
		for alg, offered := range map[string]bool{MD5: c.md5, SHA256: c.sha256} {
			want := ""
			if offered {
				want = HA1(alg, c.user, c.realm, c.password)
			}
			if got := u.lookup(alg, c.user, c.realm); got != want {
				t.Errorf("%s HA1 of %s@%s = %q, want %q", alg, c.user, c.realm, got, want)
			}
		}
	}
	if !u.HasRealm("example.com:5061") || u.HasRealm("nowhere") {
		t.Error("HasRealm wrong")
	}
}

func TestHA1(t *testing.T) {
	// RFC 2617 §3.5; the SHA-256 value is sha256sum of the same string.
	if got := HA1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life"); got != "939e7578ed9e3c518a452acee763bce9" {
		t.Errorf("MD5 HA1 = %s", got)
	}
	if got := HA1("sha-256", "Mufasa", "testrealm@host.com", "Circle Of Life"); got != "3ba6cd94661c5ef34598040c868f13b8775df29109986be50ad35ae537dd3aa4" {
		t.Errorf("SHA-256 HA1 = %s", got)
	}
	if got := HA1("MD5-sess", "a", "b", "c"); got != "" {
		t.Errorf("HA1 of unsupported algorithm = %q, want empty", got)
	}
}

func TestParseUsersErrors(t *testing.T) {
	const good = "alice:example.com:93dfce8dfebfae8af4a726982429d23a:\n"
	for _, c := range []struct{ data, want string }{
		{"# header\n\nalice:example.com\n", "users.txt:3: want user:realm:md5-ha1:sha256-ha1, got 2 field(s)"},
		{good + ":example.com:93dfce8dfebfae8af4a726982429d23a:\n", "users.txt:2: empty user"},
		{good + "bob:::93dfce8dfebfae8af4a726982429d23a\n", "users.txt:2: empty realm"},
		{good + "bob:example.com::\n", "users.txt:2: user \"bob\" has neither"},
		{good + "bob:example.com:93dfce8d:\n", "users.txt:2: MD5 HA1 of user \"bob\" is not 32 hex digits"},
		{good + "bob:example.com::zz" + strings.Repeat("0", 62) + "\n", "users.txt:2: SHA-256 HA1 of user \"bob\" is not 64 hex digits"},
		{good + "bob:example.com:93dfce8dfebfae8af4a726982429d23a:93dfce8dfebfae8af4a726982429d23a\n", "users.txt:2: SHA-256 HA1"},
		{good + "\r\n" + good, "users.txt:3: user \"alice\" in realm \"example.com\" listed twice"},
	} {
		_, err := ParseUsers("users.txt", []byte(c.data))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("ParseUsers(%q) = %v, want %q...", c.data, err, c.want)
		}
	}
	if _, err := LoadUsers(filepath.Join("testdata", "missing")); err == nil || !strings.Contains(err.Error(), "testdata/missing") {
		t.Errorf("LoadUsers(missing) = %v, want an error naming the file", err)
	}
}

func TestParseUsersCaseAndSpace(t *testing.T) {
	u, err := ParseUsers("u", []byte("  alice:example.com:93DFCE8DFEBFAE8AF4A726982429D23A:  \r\n# end\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := u.lookup(MD5, "alice", "example.com"); got != "93dfce8dfebfae8af4a726982429d23a" {
		t.Errorf("HA1 = %q, want it lower-cased", got)
	}
}

func TestParseUsersLongLine(t *testing.T) {
	data := "# fine\n" + strings.Repeat("x", 2<<20) + "\n"
	if _, err := ParseUsers("big", []byte(data)); err == nil || !strings.HasPrefix(err.Error(), "big:2: ") {
		t.Errorf("ParseUsers(2 MiB line) = %v, want an error at big:2", err)
	}
}
