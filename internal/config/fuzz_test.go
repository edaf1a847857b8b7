package config

import (
	"regexp"
	"testing"
)

// FuzzParse: Parse never panics, and every error says where: the file
// name, then the line when the file has one to point at.
func FuzzParse(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("[server]\nuser_agent = \"x\"\n\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n"))
	f.Add([]byte("[subscription]\nmin_expires = 60\nmax_expires = 30\n"))
	f.Add([]byte("[limits]\ntcp_idle_timeout = \"soon\"\n"))
	f.Add([]byte("[[listen]]\ntransport = \"sctp\"\n[[listen]]\nport = -1\n"))
	f.Add([]byte("[extension.pa]\nfile = \"pa.wasm\"\n[extension.pa.config]\na.b = 1\n"))
	f.Add([]byte("x = \n"))
	f.Add([]byte("[server\n"))
	f.Add([]byte("\xff\xfe"))
	where := regexp.MustCompile(`^fuzz\.toml(:[0-9]+)?[: ]`)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err == nil {
			if c == nil {
				t.Fatal("nil config without an error")
			}
			return
		}
		if !where.MatchString(err.Error()) {
			t.Fatalf("error does not start with the file name (and line): %q\ninput: %q", err, data)
		}
	})
}
