// Package pgtest starts a throwaway PostgreSQL server for a test binary
// and gives each test a database of its own on it. It owns that server's
// life: started at the first DSN, stopped by Main after the tests. It is
// for tests only; nothing in the daemon imports it. A test that stops,
// restarts or pauses PostgreSQL gets a server of its own from Own.
//
// The server is the machine's own PostgreSQL (initdb and postgres from
// PATH or Debian's /usr/lib/postgresql/*/bin), in a temporary folder, on
// a free port of 127.0.0.1, with trust authentication for loopback. Run
// as root (as CI is), it runs as the user postgres or nobody, since
// initdb and postgres refuse root. Without PostgreSQL a test is skipped,
// and in CI (CI=true) it fails.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Main runs the tests of a package whose tests call DSN, then stops the
// server if one was started. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// A TestMain that does more calls Stop after m.Run instead.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the server, if one was started, and removes its folder.
func Stop() {
	if srv != nil {
		srv.stop()
	}
}

// DSN returns the URL of a new, empty database that only this test uses,
// on the test binary's server, which it starts at the first call. The
// database is dropped when the test ends.
func DSN(t testing.TB) string {
	t.Helper()
	s := server(t)
	name := fmt.Sprintf("t%d", dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		// FORCE: a test that failed may have left connections open.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s.url(name)
}

// StartupTime is how long starting the server took (initdb and the
// server's start up to its first connection), 0 before the first DSN.
func StartupTime() time.Duration {
	if srv == nil {
		return 0
	}
	return srv.startup
}

var (
	found   sync.Once
	bin     string // binDir's
	missing error  // PostgreSQL's programs were not found
	once    sync.Once
	srv     *pgServer
	srvErr  error
	dbs     atomic.Int64
)

// server is the running server, or ends the test: a missing PostgreSQL
// skips it (fails it in CI), any other failure to start fails it.
func server(t testing.TB) *pgServer {
	t.Helper()
	bin := programs(t)
	once.Do(func() { srv, srvErr = start(bin) })
	if srvErr != nil {
		t.Fatalf("pgtest: start PostgreSQL: %v", srvErr)
	}
	return srv
}

// programs is binDir, or ends the test: a missing PostgreSQL skips it
// (fails it in CI).
func programs(t testing.TB) string {
	t.Helper()
	found.Do(func() { bin, missing = binDir() })
	if missing != nil {
		msg := fmt.Sprintf("PostgreSQL not found (%v): apt-get install postgresql", missing)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// binDir is the folder holding initdb and postgres: PATH's, else the
// newest of Debian's versioned folders, which are not on PATH.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no initdb on PATH or in /usr/lib/postgresql/*/bin")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

type pgServer struct {
	dir     string // holds data/, the socket and the log
	bin     string
	cred    *syscall.Credential
	port    int
	cmd     *exec.Cmd
	exited  chan struct{}
	admin   *pgx.Conn
	mu      sync.Mutex // admin is one connection
	startup time.Duration
}

const superuser = "presenced"

func (s *pgServer) url(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.port, db)
}

func (s *pgServer) exec(ctx context.Context, sql string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.admin.Exec(ctx, sql)
	return err
}

// start makes a cluster in a new temporary folder and starts its server.
func start(bin string) (*pgServer, error) {
	begin := time.Now()
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "presenced-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &pgServer{dir: dir, bin: bin, cred: cred}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	// --no-sync: the cluster is thrown away; the server itself runs with
	// PostgreSQL's durable defaults, so the benchmarks measure those.
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", superuser,
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// A port found free may be taken before the server binds it: try
	// another then.
	for try := 0; ; try++ {
		err = s.run()
		if err == nil || try == 4 {
			break
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.startup = time.Since(begin)
	return s, nil
}

// run starts the server on a free port and waits until it takes
// connections.
func (s *pgServer) run() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return s.launch()
}

// launch starts the server on s.port and waits until it takes
// connections.
func (s *pgServer) launch() error {
	logPath := filepath.Join(s.dir, "postgres.log")
	// Appended to: a server started again keeps its first run's log.
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	// The postmaster is this process's child, not pg_ctl's daemon, so that
	// the kernel stops it (SIGQUIT, immediate shutdown) if the test binary
	// dies without running Main's stop, as on a test timeout.
	s.cmd = exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"),
		"-p", strconv.Itoa(s.port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+s.dir)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, s.url("postgres"))
		cancel()
		if err == nil {
			s.admin = conn
			return nil
		}
		select {
		case <-s.exited:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited at start: %s", bytes.TrimSpace(out))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.cmd.Process.Kill()
			<-s.exited
			return fmt.Errorf("postgres took no connection in 60s: %w", err)
		}
	}
}

// credential is who the server runs as: this process's user, or when
// that is root, postgres (Debian's package makes it) or else nobody.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 == nil && err2 == nil {
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
		}
	}
	return nil, errors.New("running as root, and no user postgres or nobody to run PostgreSQL as")
}

// stop shuts the server down and removes its folder.
func (s *pgServer) stop() {
	s.halt()
	os.RemoveAll(s.dir)
}

// halt shuts the server down, fast (open sessions are ended, what was
// committed is kept), as pg_ctl stop's default mode does.
func (s *pgServer) halt() {
	s.admin.Close(context.Background())
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// ServerCPU is the CPU time, user and system, used so far by the test
// binary's server and the backends it runs now (a backend that ended
// took its share with it), read from Linux's /proc; 0 where there is
// none or no server was started. Benchmarks report the database's share
// of an operation from it.
func ServerCPU() time.Duration {
	if srv == nil {
		return 0
	}
	root := srv.cmd.Process.Pid
	dirs, _ := os.ReadDir("/proc")
	var ticks int64
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		f := stat(d.Name())
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); pid != root && ppid != root {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += utime + stime
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// stat is the fields of /proc/pid/stat from the third on (state, ppid,
// ...: f[1] is the parent's pid, f[11] and f[12] utime and stime), nil
// if there is no such process. The second, comm, may hold spaces, so
// they are counted from its closing parenthesis.
func stat(pid string) []string {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
}

// clockTicks is Linux's USER_HZ, the unit of /proc's times: 100 on every
// architecture Go runs Linux on.
const clockTicks = 100
