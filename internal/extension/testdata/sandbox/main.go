// Command sandbox is a test module that probes its sandbox from inside: on
// PUBLISH it tries the file system, the environment, the network and the
// clocks, and answers with one "probe=result" line per attempt as state.
// The body names what to try, one "key=value" per line:
//
//	read=PATH   a host file it must not be able to read
//	write=PATH  a host file it must not be able to create
//	dial=ADDR   a host TCP listener it must not be able to reach
//	listen=ADDR the host listener's address, to bind it again
//
// Go's net package on wasip1 simulates sockets inside the guest
// (net_fake.go): Listen may succeed, but nothing it binds is on the host.
package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/presenced/presenced/sdk"
)

type sandbox struct{}

func (sandbox) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	return sdk.Manifest{Packages: []sdk.Package{{Event: "sandbox", Accept: []string{"text/plain"}}}}, nil
}

// result is "ok" or "err" and what happened, so the test can print it.
func result(err error, ok string) string {
	if err != nil {
		return "err " + err.Error()
	}
	return "ok " + ok
}

func (sandbox) Publish(r *sdk.Request) (*sdk.Response, error) {
	var out []string
	add := func(k, v string) { out = append(out, k+"="+strings.ReplaceAll(v, "\n", " ")) }
	for _, line := range strings.Split(string(r.Publication.Body), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "read":
			b, err := os.ReadFile(v)
			add("read "+v, result(err, fmt.Sprintf("%d bytes: %.40q", len(b), b)))
		case "write":
			add("write "+v, result(os.WriteFile(v, []byte("escaped"), 0o644), "written"))
		case "listen":
			l, err := net.Listen("tcp", v)
			if err == nil {
				l.Close()
			}
			add("listen "+v, result(err, "listening"))
		case "dial":
			c, err := net.Dial("tcp", v)
			if err == nil {
				c.Close()
			}
			add("dial "+v, result(err, "connected"))
		}
	}
	b, err := os.ReadFile("/etc/passwd")
	add("read /etc/passwd", result(err, fmt.Sprintf("%d bytes", len(b))))
	entries, err := os.ReadDir("/")
	add("readdir /", result(err, fmt.Sprint(len(entries), " entries")))
	entries, err = os.ReadDir(".")
	add("readdir .", result(err, fmt.Sprint(len(entries), " entries")))
	wd, err := os.Getwd()
	add("getwd", result(err, wd))
	add("env HOME", os.Getenv("HOME"))
	add("environ", fmt.Sprint(len(os.Environ())))
	add("args", fmt.Sprint(len(os.Args)))
	start := time.Now()
	time.Sleep(time.Millisecond)
	add("now", fmt.Sprint(start.UnixNano()))
	add("slept", fmt.Sprint(time.Since(start).Nanoseconds()))
	return &sdk.Response{State: []byte(strings.Join(out, "\n")), StateChanged: true}, nil
}

func (sandbox) Unpublish(r *sdk.Request) (*sdk.Response, error) { return &sdk.Response{}, nil }

func (sandbox) Render(r *sdk.Request) (*sdk.Response, error) { return &sdk.Response{}, nil }

func init() { sdk.Register(sandbox{}) }

func main() {}
