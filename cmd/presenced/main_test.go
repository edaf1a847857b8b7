package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/store/postgres/pgtest"
	"github.com/presenced/presenced/sdk/sdktest"
)

// The modules the daemon tests load, built from the repository by sdktest.
const (
	paPkg   = "github.com/presenced/presenced/extensions/pa"
	echoPkg = "github.com/presenced/presenced/internal/extension/testdata/echo"
)

var (
	buildMu sync.Mutex
	binDir  string                // where the commands are built, removed by TestMain
	built   = map[string]string{} // command name: its binary
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildDaemon builds this command once per test binary.
func buildDaemon(t *testing.T) string {
	t.Helper()
	return buildCommand(t, "presenced")
}

// buildCommand builds cmd/name (this command, or presencectl for the
// tests that drive the daemon as an operator does) once per test binary.
func buildCommand(t *testing.T, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[name]; ok {
		return bin
	}
	if binDir == "" {
		dir, err := os.MkdirTemp("", "presenced-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = dir
	}
	bin := filepath.Join(binDir, name)
	if out, err := exec.Command("go", "build", "-o", bin, "../"+name).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	built[name] = bin
	return bin
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "presenced.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// daemon is a started presenced whose stderr the test reads as it comes.
type daemon struct {
	cmd       *exec.Cmd
	args      []string      // its command line, for a restart
	cacheHome string        // its $XDG_CACHE_HOME
	done      chan struct{} // closed once it has exited and its stderr is read
	err       error         // its exit, once done

	mu  sync.Mutex
	log strings.Builder
}

// startDaemon runs bin with args; it is killed when the test ends. Its
// user cache directory is the test's, so nothing is left in $HOME.
func startDaemon(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	return startDaemonIn(t, t.TempDir(), bin, args...)
}

// restart starts the daemon again on the same command line and cache
// directory, as a supervisor would after it died; d must have exited.
func (d *daemon) restart(t *testing.T) *daemon {
	t.Helper()
	return startDaemonIn(t, d.cacheHome, d.args[0], d.args[1:]...)
}

func startDaemonIn(t *testing.T, cacheHome, bin string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), args: append([]string{bin}, args...), cacheHome: cacheHome,
		done: make(chan struct{})}
	d.cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+d.cacheHome, "CACHE_DIRECTORY=")
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		// The tests that speak SIP to the daemon fail on what they got;
		// why the daemon answered so is in its log.
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.output())
		}
	})
	return d
}

// output is what the daemon has written to stderr so far.
func (d *daemon) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// await returns the submatches of the first line of stderr matching re,
// failing the test if the daemon exits or the timeout passes first.
func (d *daemon) await(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(d.output(), "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		}
		select {
		case <-d.done:
			// Read once more: the line may have come with the exit.
			for _, line := range strings.Split(d.output(), "\n") {
				if m := re.FindStringSubmatch(line); m != nil {
					return m
				}
			}
			t.Fatalf("daemon exited (%v) before logging %q:\n%s", d.err, re, d.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not log %q within %s:\n%s", re, timeout, d.output())
		}
	}
}

var servingUDP = regexp.MustCompile(`presenced serving.*udp:(127\.0\.0\.1:\d+)`)

// serving waits for the daemon to say it serves and returns its first UDP
// address.
func (d *daemon) serving(t *testing.T) string {
	t.Helper()
	return d.await(t, servingUDP, 60*time.Second)[1]
}

var adminServing = regexp.MustCompile(`admin API serving.* addr=(\S+)`)

// admin waits for the daemon to say its admin API serves and returns the
// API's address.
func (d *daemon) admin(t *testing.T) string {
	t.Helper()
	return d.await(t, adminServing, 60*time.Second)[1]
}

// exit waits for the daemon to exit by itself and returns its status;
// it fails the test if the daemon starts serving or outlives the timeout.
func (d *daemon) exit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case <-d.done:
			var ee *exec.ExitError
			if !errors.As(d.err, &ee) {
				t.Fatalf("exit: %v\n%s", d.err, d.output())
			}
			return ee.ExitCode()
		case <-deadline:
			t.Fatalf("daemon still running after %s:\n%s", timeout, d.output())
		case <-time.After(20 * time.Millisecond):
			if strings.Contains(d.output(), "presenced serving") {
				t.Fatalf("daemon serves; it should have refused to start:\n%s", d.output())
			}
		}
	}
}

// stop sends SIGTERM and fails the test unless the daemon exits 0.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if d.err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", d.err, d.output())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
}

// kill ends the daemon with SIGKILL, so that no shutdown code runs, and
// waits for it to be gone.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not die on SIGKILL")
	}
}

// options sends an OPTIONS over UDP to addr and returns the answer.
func options(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "OPTIONS sip:presenced@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-opt1\r\n"+
		"From: <sip:t@example.com>;tag=1\r\nTo: <sip:presenced@example.com>\r\nCall-ID: opt1\r\nCSeq: 1 OPTIONS\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", addr, c.LocalAddr())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("OPTIONS to %s: %v", addr, err)
	}
	return string(buf[:n])
}

// The real daemon, started from a TOML file with the real modules,
// answers SIP on a socket and stops cleanly on SIGTERM. Its compilation
// cache is in the user's cache directory, not in data_dir, and the one an
// older daemon left in data_dir is removed.
func TestDaemonServesAndStops(t *testing.T) {
	bin := buildDaemon(t)
	pa := sdktest.Build(t, "github.com/presenced/presenced/extensions/pa")
	conf := sdktest.Build(t, "github.com/presenced/presenced/extensions/conference")
	data := t.TempDir()
	oldCache := filepath.Join(data, "wasm-cache")
	if err := os.MkdirAll(filepath.Join(oldCache, "wazero-old"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf(`
[server]
data_dir = %q
[admin]
listen = ""
[[listen]]
transport = "udp"
address = "127.0.0.1:0"
[extension.pa]
path = %q
[extension.conference]
path = %q
`, data, pa, conf))
	d := startDaemon(t, bin, "-config", cfg)
	res := options(t, d.serving(t))
	if !strings.HasPrefix(res, "SIP/2.0 200") || !strings.Contains(res, "Allow-Events: conference, presence") {
		t.Fatalf("OPTIONS answer:\n%s", res)
	}
	d.stop(t)

	if _, err := os.Stat(oldCache); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data_dir still holds wasm-cache: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(d.cacheHome, "presenced", "wazero-*", "*")); len(m) == 0 {
		t.Errorf("nothing cached in %s", filepath.Join(d.cacheHome, "presenced"))
	}
}

// A compilation cache that cannot be created costs a slower start, not
// the start: the daemon warns and serves.
func TestDaemonStartsWithoutACache(t *testing.T) {
	bin := buildDaemon(t)
	pa := sdktest.Build(t, "github.com/presenced/presenced/extensions/pa")
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(file, "cache") // under a file: no one can create it
	d := startDaemon(t, bin, "-config", writeConfig(t, fmt.Sprintf(`
[server]
data_dir = %q
cache_dir = %q
[admin]
listen = ""
[[listen]]
transport = "udp"
address = "127.0.0.1:0"
[extension.pa]
path = %q
`, t.TempDir(), cache, pa)))
	addr := d.serving(t)
	if want := "compilation cache unusable, running without it"; !strings.Contains(d.output(), want) ||
		!strings.Contains(d.output(), cache) {
		t.Errorf("no warning %q naming %s:\n%s", want, cache, d.output())
	}
	if res := options(t, addr); !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Fatalf("OPTIONS answer:\n%s", res)
	}
	d.stop(t)
}

// A bad config stops the daemon before it serves, naming file, line, key.
func TestDaemonRefusesABadConfig(t *testing.T) {
	bin := buildDaemon(t)
	cfg := writeConfig(t, "[subscription]\nmin_expires = 60\nmax_expires = 10\n")
	out, err := exec.Command(bin, "-config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want status 2\n%s", err, out)
	}
	want := cfg + `:3: key "subscription.max_expires"`
	if !strings.Contains(string(out), want) {
		t.Fatalf("output %q does not name %q", out, want)
	}

	// The admin API open to the network without a token: both a start
	// and a check refuse it, before anything listens.
	cfg = writeConfig(t, "[admin]\nlisten = \"0.0.0.0:0\"\n")
	for _, flag := range []string{"-check-config", "-config"} {
		out, err := exec.Command(bin, flag, cfg).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("%s: exit = %v, want status 2\n%s", flag, err, out)
		}
		if want := cfg + `:2: key "admin.listen": "0.0.0.0:0" is reachable beyond this host`; !strings.Contains(string(out), want) {
			t.Fatalf("%s: output %q does not name %q", flag, out, want)
		}
	}

	cfg = writeConfig(t, "[extension.pa]\npath = \"missing.wasm\"\n")
	out, err = exec.Command(bin, "-check-config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing.wasm") {
		t.Fatalf("a missing module passed -check-config: %v\n%s", err, out)
	}
}

// Two daemons on one data_dir, or one SQLite file, would interleave CSeqs
// and overwrite each other's acknowledged state: the second is refused before it binds a
// socket or opens the store, naming the directory and the first's pid,
// and the first keeps serving.
func TestDaemonRefusesASharedDataDir(t *testing.T) {
	bin := buildDaemon(t)
	data := t.TempDir()
	// Port 0: the second daemon's ports differ from the first's.
	text := fmt.Sprintf("[server]\ndata_dir = %q\n[admin]\nlisten = \"127.0.0.1:0\"\n"+
		"[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n", data)
	a := startDaemon(t, bin, "-config", writeConfig(t, text))
	addr := a.serving(t)

	b := startDaemon(t, bin, "-config", writeConfig(t, text))
	if code := b.exit(t, 30*time.Second); code != 1 {
		t.Fatalf("second daemon exit status %d, want 1:\n%s", code, b.output())
	}
	out := b.output()
	want := fmt.Sprintf("data directory %s is in use by pid %d", data, a.cmd.Process.Pid)
	if !strings.Contains(out, want) {
		t.Fatalf("second daemon's error does not say %q:\n%s", want, out)
	}
	for _, done := range []string{"state restored", "admin API serving", "extension loaded"} {
		if strings.Contains(out, done) {
			t.Fatalf("second daemon logged %q before refusing:\n%s", done, out)
		}
	}

	// A data_dir of its own but the first's SQLite file: refused too, since
	// SQLite's writes do not check another daemon's.
	c := startDaemon(t, bin, "-config", writeConfig(t, fmt.Sprintf("[server]\ndata_dir = %q\n[store]\npath = %q\n"+
		"[admin]\nlisten = \"\"\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n",
		t.TempDir(), filepath.Join(data, "presenced.db"))))
	if code := c.exit(t, 30*time.Second); code != 1 {
		t.Fatalf("daemon on the first's store file: exit status %d, want 1:\n%s", code, c.output())
	}
	if want := fmt.Sprintf("store directory %s is in use by pid %d", data, a.cmd.Process.Pid); !strings.Contains(c.output(), want) {
		t.Fatalf("daemon on the first's store file does not say %q:\n%s", want, c.output())
	}

	if res := options(t, addr); !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Fatalf("first daemon's OPTIONS answer:\n%s", res)
	}
	a.stop(t)
}

// A corrupt compilation cache (a disk error, a crash mid-write by another
// tool) is emptied and the modules compiled again, with a warning; it
// must not stop the start with wazero's checksum mismatch.
func TestDaemonRebuildsACorruptCache(t *testing.T) {
	bin := buildDaemon(t)
	pa := sdktest.Build(t, "github.com/presenced/presenced/extensions/pa")
	cache := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf(`
[server]
data_dir = %q
cache_dir = %q
[admin]
listen = ""
[[listen]]
transport = "udp"
address = "127.0.0.1:0"
[extension.pa]
path = %q
trusted = true
`, t.TempDir(), cache, pa))
	d := startDaemon(t, bin, "-config", cfg)
	d.serving(t)
	d.stop(t)

	files, _ := filepath.Glob(filepath.Join(cache, "wazero-*", "*"))
	if len(files) == 0 {
		t.Fatalf("nothing cached in %s", cache)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// In the compiled code, which the file's checksum covers.
		for _, i := range []int{len(b) / 4, len(b) / 3, len(b) / 2} {
			b[i] ^= 0xff
		}
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	d = startDaemon(t, bin, "-config", cfg)
	addr := d.serving(t)
	if want := "compilation cache unreadable"; !strings.Contains(d.output(), want) {
		t.Errorf("no warning %q:\n%s", want, d.output())
	}
	if res := options(t, addr); !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Fatalf("OPTIONS answer:\n%s", res)
	}
	d.stop(t)
	for _, f := range files {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("corrupt %s not removed: %v", f, err)
		}
	}
}

// A taken port, the admin API's or a SIP listener's, fails the start
// before the store is opened or state restored: the daemon exits 1 naming
// the address, and nothing was done.
func TestDaemonFailsFastOnATakenPort(t *testing.T) {
	bin := buildDaemon(t)
	for _, c := range []struct {
		name, admin, sip string // which is taken: "taken" stands for its address
	}{
		{"admin", "taken", "udp"},
		{"sip udp", "127.0.0.1:0", "udp taken"},
		{"sip tcp", "127.0.0.1:0", "tcp taken"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var taken string
			if c.sip == "udp taken" {
				pc, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				taken = pc.LocalAddr().String()
			} else {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				taken = ln.Addr().String()
			}
			admin, transport, sipAddr := c.admin, strings.Fields(c.sip)[0], "127.0.0.1:0"
			if admin == "taken" {
				admin = taken
			} else {
				sipAddr = taken
			}
			data := t.TempDir()
			d := startDaemon(t, bin, "-config", writeConfig(t, fmt.Sprintf(`
[server]
data_dir = %q
[admin]
listen = %q
[[listen]]
transport = %q
address = %q
`, data, admin, transport, sipAddr)))
			if code := d.exit(t, 15*time.Second); code != 1 {
				t.Fatalf("exit status %d, want 1:\n%s", code, d.output())
			}
			out := d.output()
			if !strings.Contains(out, taken) || !strings.Contains(out, "address already in use") {
				t.Errorf("the error does not name %s in use:\n%s", taken, out)
			}
			if strings.Contains(out, "state restored") {
				t.Errorf("state restored before the daemon gave up:\n%s", out)
			}
			if _, err := os.Stat(filepath.Join(data, "presenced.db")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the store was opened before the daemon gave up: %v", err)
			}
		})
	}
}

// A reload applies the modules only: a changed SIP listener is logged, by
// key, as needing a restart, and the old socket keeps serving.
func TestReloadNamesWhatNeedsARestart(t *testing.T) {
	bin := buildDaemon(t)
	text := fmt.Sprintf("[server]\ndata_dir = %q\n[admin]\nlisten = \"\"\n"+
		"[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n", t.TempDir())
	cfg := writeConfig(t, text)
	d := startDaemon(t, bin, "-config", cfg)
	addr := d.serving(t)

	moved := strings.Replace(text, `"127.0.0.1:0"`, `"127.0.0.2:0"`, 1)
	if err := os.WriteFile(cfg, []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.await(t, regexp.MustCompile(`level=INFO msg=reloaded`), 30*time.Second)
	d.await(t, regexp.MustCompile(`level=WARN .*needs a restart.* key=listen\.0\.address`), time.Second)
	if strings.Count(d.output(), "needs a restart") != 1 {
		t.Errorf("other keys logged as changed:\n%s", d.output())
	}
	if res := options(t, addr); !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Fatalf("OPTIONS answer:\n%s", res)
	}
	d.stop(t)
}
