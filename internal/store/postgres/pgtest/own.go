package pgtest

import (
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// Server is a PostgreSQL server that one test owns, unlike the shared one
// of DSN: the test may stop it, start it again and pause it, to see what
// a database restart or a stall does to what uses it.
type Server struct {
	t      testing.TB
	s      *pgServer
	up     bool
	mu     sync.Mutex // paused: Resume may run on a timer's goroutine
	paused []int      // the processes Pause stopped, the postmaster first
}

// Own starts a server of t's own, in its own folder on a free port of
// 127.0.0.1, and stops it and removes its folder when t ends. A missing
// PostgreSQL skips t, as DSN does.
func Own(t testing.TB) *Server {
	t.Helper()
	s, err := start(programs(t))
	if err != nil {
		t.Fatalf("pgtest: start PostgreSQL: %v", err)
	}
	o := &Server{t: t, s: s, up: true}
	t.Cleanup(func() {
		o.Resume()
		if o.up {
			s.stop()
		} else {
			os.RemoveAll(s.dir)
		}
	})
	return o
}

// DSN is the URL of the server's database postgres, the same across
// restarts.
func (o *Server) DSN() string { return o.s.url("postgres") }

// Stop shuts the server down as an operator's restart does (pg_ctl's
// fast mode: sessions are ended, what was committed stays) and returns
// once it has exited. Its port is then refused.
func (o *Server) Stop() {
	o.t.Helper()
	o.Resume()
	if !o.up {
		o.t.Fatal("pgtest: Stop of a stopped server")
	}
	o.s.halt()
	o.up = false
}

// Start starts the stopped server again, on the same port and data, and
// returns once it takes connections.
func (o *Server) Start() {
	o.t.Helper()
	if o.up {
		o.t.Fatal("pgtest: Start of a running server")
	}
	if err := o.s.launch(); err != nil {
		o.t.Fatalf("pgtest: start PostgreSQL again: %v", err)
	}
	o.up = true
}

// Pause freezes the server (SIGSTOP to the postmaster, then to every
// process it runs) as a stalled host or a link that drops every packet
// does: connections stay open and new ones are queued by the kernel,
// and nothing is answered until Resume. The test ends the pause, at the
// latest when it ends.
func (o *Server) Pause() {
	o.t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.up || o.paused != nil {
		o.t.Fatal("pgtest: Pause of a server not running or paused already")
	}
	// The postmaster first: stopped, it forks no backend that the list
	// of its children would miss.
	root := o.s.cmd.Process.Pid
	if err := syscall.Kill(root, syscall.SIGSTOP); err != nil {
		o.t.Fatalf("pgtest: pause: %v", err)
	}
	o.paused = []int{root}
	for _, pid := range children(root) {
		if syscall.Kill(pid, syscall.SIGSTOP) == nil {
			o.paused = append(o.paused, pid)
		}
	}
}

// Resume ends a Pause; it does nothing to a server not paused. Unlike
// the other methods, it may be called from any goroutine.
func (o *Server) Resume() {
	o.mu.Lock()
	defer o.mu.Unlock()
	// Children first, so that the postmaster finds them running.
	for i := len(o.paused) - 1; i >= 0; i-- {
		syscall.Kill(o.paused[i], syscall.SIGCONT)
	}
	o.paused = nil
}

// children are the pids of the processes whose parent is pid, from
// Linux's /proc.
func children(pid int) []int {
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if f := stat(d.Name()); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}
