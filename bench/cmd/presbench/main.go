// Command presbench drives the sipp scenarios of bench/sipp against a
// running presence server and prints one table: for each workload and each
// offered rate, the rate achieved, failed calls, retransmissions, the
// server's CPU per operation and its resident memory.
//
// It knows nothing about presenced: give it the server's SIP address and
// its pid (for /proc/PID/stat and /proc/PID/status), and it measures
// Kamailio or anything else the same way.
//
//	presbench -server 127.0.0.1:5060 -pid 1234 -name presenced -json out.json
//	presbench -compare presenced.json,kamailio.json
//
// Every step is bounded: sipp gets -m (a call count) and -timeout, and the
// whole run a global -timeout. A workload stops stepping up once a step
// fails more than -max-fail of its calls.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one step of one workload.
type Row struct {
	Workload  string  `json:"workload"`
	Unit      string  `json:"unit"`    // what the rates count: PUBLISH/s, SUBSCRIBE/s, NOTIFY/s
	Offered   float64 `json:"offered"` // target rate
	Achieved  float64 `json:"achieved"`
	Ops       int     `json:"ops"`      // operations completed
	Expected  int     `json:"expected"` // operations attempted
	Failed    int     `json:"failed"`   // Expected - Ops
	FailPct   float64 `json:"fail_pct"`
	Rejected  int     `json:"rejected,omitempty"` // answered 503 (overload workload)
	Retrans   int     `json:"retrans"`            // retransmissions seen by sipp
	CPUus     float64 `json:"cpu_us_op"`          // server utime+stime per completed op, µs
	CPUPct    float64 `json:"cpu_pct"`            // server CPU over the step, % of one core
	RSSKB     int     `json:"rss_kb"`             // server VmRSS after the step
	Seconds   float64 `json:"seconds"`
	Note      string  `json:"note,omitempty"`
	Truncated bool    `json:"truncated,omitempty"` // stopped by a timeout
}

// Result is one run against one server.
type Result struct {
	Name    string    `json:"name"`
	Server  string    `json:"server"`
	Started time.Time `json:"started"`
	Rows    []Row     `json:"rows"`
	IdleRSS int       `json:"idle_rss_kb"`
	// RestRSS is the server's RSS -rest after the last step (0: not read).
	RestRSS  int      `json:"rest_rss_kb,omitempty"`
	Comments []string `json:"comments,omitempty"`
}

type driver struct {
	server    string
	pid       int
	sipp      string
	scenarios string
	work      string
	step      time.Duration
	maxFail   float64
	watchers  int
	buf       int
	run       string // unique prefix for every AOR of this run
	deadline  time.Time
	verbose   bool
	res       *Result
}

func main() {
	var (
		server    = flag.String("server", "127.0.0.1:5060", "SIP `host:port` of the server under test (UDP)")
		pid       = flag.Int("pid", 0, "`pid` of the server, for its CPU and RSS (0: not measured)")
		name      = flag.String("name", "server", "column `name` for this server")
		sippBin   = flag.String("sipp", "sipp", "sipp binary")
		scenarios = flag.String("scenarios", "", "`dir` of the sipp scenarios (default: bench/sipp next to this source, or ./bench/sipp)")
		work      = flag.String("work", "", "`dir` for sipp's output files (default: a new temp dir)")
		workloads = flag.String("workloads", "publish,subscribe,fanout,overload", "workloads to run, comma-separated")
		peak      = flag.Float64("overload-peak", 0, "PUBLISH/s taken as the peak by the overload workload (0: the best clean step of the publish workload)")
		pubRates  = flag.String("publish-rates", "250,500,1000,2000,4000,5000,6000,7000,8000,10000,12000,14000,16000", "PUBLISH/s steps")
		subRates  = flag.String("subscribe-rates", "250,500,1000,2000,3000,4000,5000,6000,8000,10000,12000,14000,16000", "SUBSCRIBE/s steps (each with its NOTIFY)")
		fanRates  = flag.String("fanout-rates", "1000,2000,5000,10000,15000,20000,30000,40000,50000,75000,100000", "NOTIFY/s steps for the fan-out (PUBLISH/s = rate/watchers)")
		step      = flag.Duration("step", 5*time.Second, "length of each step")
		maxFail   = flag.Float64("max-fail", 1, "stop a workload's steps once a step fails more than this `percent`")
		watchers  = flag.Int("watchers", 1000, "watchers of the fan-out presentity")
		prefill   = flag.Int("prefill", 10000, "presentities published before the subscribe workload")
		timeout   = flag.Duration("timeout", 9*time.Minute, "global time limit of the run")
		buf       = flag.Int("buff-size", 4194304, "sipp socket buffer size (-buff_size)")
		jsonOut   = flag.String("json", "", "also write the result to this `file`")
		compare   = flag.String("compare", "", "print the comparison of two -json files `a.json,b.json` and exit")
		verbose   = flag.Bool("v", false, "print each sipp command line")
		freePort  = flag.Bool("free-port", false, "print a free UDP port on 127.0.0.1 and exit (for scripts)")
		rest      = flag.Duration("rest", 0, "read the server's RSS this long after the last step (0: not read), to see what the load left")
	)
	flag.Parse()
	if *freePort {
		port, err := freeUDPPort()
		if err != nil {
			fatal(err)
		}
		fmt.Println(port)
		return
	}
	if *compare != "" {
		if err := printCompare(os.Stdout, strings.Split(*compare, ",")); err != nil {
			fatal(err)
		}
		return
	}
	dir := *scenarios
	if dir == "" {
		dir = findScenarios()
	}
	if *work == "" {
		d, err := os.MkdirTemp("", "presbench-")
		if err != nil {
			fatal(err)
		}
		*work = d
	} else if err := os.MkdirAll(*work, 0o755); err != nil {
		fatal(err)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	d := &driver{
		server: *server, pid: *pid, sipp: *sippBin, scenarios: dir, work: *work,
		step: *step, maxFail: *maxFail, watchers: *watchers, buf: *buf,
		run:      strconv.FormatInt(time.Now().Unix()%1000000, 36),
		deadline: time.Now().Add(*timeout), verbose: *verbose,
		res: &Result{Name: *name, Server: *server, Started: time.Now()},
	}
	if d.pid > 0 {
		if _, err := readCPU(d.pid); err != nil {
			fatal(fmt.Errorf("pid %d: %w", d.pid, err))
		}
		d.res.IdleRSS = d.rss()
	}
	fmt.Fprintf(os.Stderr, "presbench: %s at %s (pid %d), sipp files in %s\n", *name, *server, *pid, *work)
	for _, w := range strings.Split(*workloads, ",") {
		var err error
		switch strings.TrimSpace(w) {
		case "publish":
			err = d.publish(parseRates(*pubRates))
		case "subscribe":
			err = d.subscribe(parseRates(*subRates), *prefill)
		case "fanout":
			err = d.fanout(parseRates(*fanRates))
		case "overload":
			err = d.overload(*peak)
		case "":
		default:
			err = fmt.Errorf("unknown workload %q", w)
		}
		if err != nil {
			d.comment("%s: %v", w, err)
			fmt.Fprintf(os.Stderr, "presbench: %s: %v\n", w, err)
		}
	}
	if d.pid > 0 && *rest > 0 {
		time.Sleep(*rest)
		d.res.RestRSS = d.rss()
	}
	printTable(os.Stdout, d.res)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(d.res, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fatal(err)
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "presbench:", err)
	os.Exit(1)
}

func findScenarios() string {
	for _, c := range []string{"bench/sipp", "sipp", "../sipp", "../../sipp"} {
		if _, err := os.Stat(filepath.Join(c, "publish.xml")); err == nil {
			return c
		}
	}
	return "bench/sipp"
}

func parseRates(s string) []float64 {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if v, err := strconv.ParseFloat(strings.TrimSpace(f), 64); err == nil && v > 0 {
			out = append(out, v)
		}
	}
	return out
}

func (d *driver) comment(format string, a ...any) {
	d.res.Comments = append(d.res.Comments, fmt.Sprintf(format, a...))
}

func (d *driver) left() time.Duration { return time.Until(d.deadline) }

// ---- sipp -----------------------------------------------------------------

// sippRun is one sipp process: its stat CSV (final line), its counts CSV.
type sippRun struct {
	name  string
	cmd   *exec.Cmd
	stat  string
	count string
	errf  string
	done  chan error
}

// start launches sipp with the scenario, the common flags and args; it
// is killed at limit at the latest.
func (d *driver) start(ctx context.Context, name, scenario string, limit time.Duration, args ...string) (*sippRun, error) {
	if d.left() < limit {
		limit = d.left()
	}
	if limit < time.Second {
		return nil, errors.New("global timeout reached")
	}
	// sipp's own port is one the kernel hands out, never sipp's default
	// 5060, which it would take from a SIP client running beside the bench
	// (the client tests pick theirs below the ephemeral range).
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	base := filepath.Join(d.work, name)
	r := &sippRun{name: name, stat: base + "_stat.csv", count: base + "_counts.csv", errf: base + "_errors.log", done: make(chan error, 1)}
	full := []string{d.server,
		"-sf", filepath.Join(d.scenarios, scenario),
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "u1",
		"-nostdin", "-buff_size", strconv.Itoa(d.buf),
		"-trace_stat", "-stf", r.stat, "-fd", "1",
		"-trace_counts", "-trace_err", "-error_file", r.errf,
		"-timeout", fmt.Sprintf("%ds", int(limit.Seconds())),
		"-max_recv_loops", "10000",
		"-default_behaviors", "all,-bye",
	}
	full = append(full, args...)
	cctx, cancel := context.WithTimeout(ctx, limit+5*time.Second)
	r.cmd = exec.CommandContext(cctx, d.sipp, full...)
	r.cmd.Dir = d.work // -trace_counts writes <scenario>_<pid>_counts.csv here
	out, err := os.Create(base + "_stdout.log")
	if err != nil {
		cancel()
		return nil, err
	}
	r.cmd.Stdout, r.cmd.Stderr = out, out
	if d.verbose {
		fmt.Fprintln(os.Stderr, "+", d.sipp, strings.Join(full, " "))
	}
	if err := r.cmd.Start(); err != nil {
		cancel()
		out.Close()
		return nil, err
	}
	go func() {
		err := r.cmd.Wait()
		out.Close()
		cancel()
		// sipp names the counts file after the scenario and its pid.
		sc := strings.TrimSuffix(filepath.Base(scenario), ".xml")
		os.Rename(filepath.Join(d.work, fmt.Sprintf("%s_%d_counts.csv", sc, r.cmd.Process.Pid)), r.count)
		r.done <- err
	}()
	return r, nil
}

// wait waits for sipp to exit. sipp exits 1 when some call failed: that is
// a result, not an error.
func (r *sippRun) wait() error {
	err := <-r.done
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 && ee.ExitCode() < 97 {
		return nil
	}
	return err
}

// stats reads the last line of the stat CSV into a map by column name.
func readCSVLast(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var header, last []string
	for sc.Scan() {
		fields := strings.Split(strings.TrimRight(sc.Text(), ";"), ";")
		if header == nil {
			header = fields
			continue
		}
		if len(fields) >= len(header) {
			last = fields
		}
	}
	if header == nil || last == nil {
		return nil, fmt.Errorf("%s: no data line", filepath.Base(path))
	}
	m := make(map[string]string, len(header))
	for i, h := range header {
		m[h] = last[i]
	}
	return m, nil
}

func num(m map[string]string, k string) int {
	v, _ := strconv.Atoi(strings.TrimSpace(m[k]))
	return v
}

// elapsed parses sipp's HH:MM:SS:uuuuuu.
func elapsed(s string) float64 {
	p := strings.Split(strings.TrimSpace(s), ":")
	if len(p) != 4 {
		return 0
	}
	h, _ := strconv.ParseFloat(p[0], 64)
	m, _ := strconv.ParseFloat(p[1], 64)
	sec, _ := strconv.ParseFloat(p[2], 64)
	us, _ := strconv.ParseFloat(p[3], 64)
	return h*3600 + m*60 + sec + us/1e6
}

// firstErrors returns the first lines of sipp's error file, for the notes.
func firstErrors(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	s := string(b)
	for _, k := range []string{"received '", "while expecting"} {
		if i := strings.Index(s, k); i >= 0 {
			end := i + 120
			if end > len(s) {
				end = len(s)
			}
			return strings.ReplaceAll(strings.ReplaceAll(s[i:end], "\n", " "), "\r", "")
		}
	}
	if len(s) > 160 {
		s = s[:160]
	}
	return strings.ReplaceAll(s, "\n", " ")
}

// ---- /proc ----------------------------------------------------------------

var clkTck = 100.0 // sysconf(_SC_CLK_TCK) on Linux

// readCPU returns utime+stime of pid in seconds.
func readCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // comm may hold spaces
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clkTck, nil
}

// readCPUAll sums utime+stime over pids (Kamailio is several processes).
func (d *driver) cpu() float64 {
	if d.pid <= 0 {
		return math.NaN()
	}
	total := 0.0
	for _, p := range d.pids() {
		if c, err := readCPU(p); err == nil {
			total += c
		}
	}
	return total
}

// rss is the server's resident memory: VmRSS for one process; for a
// server of several processes (Kamailio) the private memory of each plus
// the shared and file-backed memory once (the largest process's), as the
// workers map the same shared segment.
func (d *driver) rss() int {
	if d.pid <= 0 {
		return 0
	}
	anon, shm, file := 0, 0, 0
	for _, p := range d.pids() {
		m := readStatus(p)
		anon += m["RssAnon"]
		shm = max(shm, m["RssShmem"])
		file = max(file, m["RssFile"])
	}
	return anon + shm + file
}

// pids is the server and its children: Kamailio forks workers that share
// the work (and memory: their RSS overlaps in the shared segment, so the
// sum overstates it; see README).
func (d *driver) pids() []int {
	out := []int{d.pid}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", d.pid, d.pid))
	if err != nil {
		return out
	}
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// readStatus returns the kB fields of /proc/PID/status.
func readStatus(pid int) map[string]int {
	m := map[string]int{}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.HasSuffix(v, "kB") {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(v, "kB")))
		if err == nil {
			m[k] = n
		}
	}
	return m
}

// ---- workloads ------------------------------------------------------------

// settle waits (at most 20 s, or max) until the server is nearly idle, so that a
// step does not pay for the retransmissions of the one before.
func (d *driver) settle() { d.settleFor(20 * time.Second) }

func (d *driver) settleFor(max time.Duration) {
	if d.pid <= 0 {
		time.Sleep(time.Second)
		return
	}
	for t := time.Now(); time.Since(t) < max; {
		c0 := d.cpu()
		time.Sleep(500 * time.Millisecond)
		if (d.cpu()-c0)/0.5 < 0.10 {
			return
		}
	}
}

// measure wraps a step: CPU before and after, RSS after.
func (d *driver) finish(r *Row, cpu0 float64) {
	cpu := d.cpu() - cpu0
	if r.Ops > 0 && !math.IsNaN(cpu) {
		r.CPUus = cpu / float64(r.Ops) * 1e6
	}
	if r.Seconds > 0 && !math.IsNaN(cpu) {
		r.CPUPct = cpu / r.Seconds * 100
	}
	r.RSSKB = d.rss()
	r.Failed = r.Expected - r.Ops
	if r.Failed < 0 {
		r.Failed = 0
	}
	if r.Expected > 0 {
		r.FailPct = float64(r.Failed) / float64(r.Expected) * 100
	}
	d.res.Rows = append(d.res.Rows, *r)
	fmt.Fprintf(os.Stderr, "presbench: %-9s %7.0f %-11s -> %7.0f/s  failed %d (%.2f%%)  retrans %d  cpu %.0f µs/op (%.0f%%)  rss %d MB %s\n",
		r.Workload, r.Offered, r.Unit, r.Achieved, r.Failed, r.FailPct, r.Retrans, r.CPUus, r.CPUPct, r.RSSKB/1024, r.Note)
}

// oneShot runs a simple workload step: count calls at rate, one op per call.
func (d *driver) oneShot(workload, unit, name, scenario string, rate float64, extra ...string) (Row, error) {
	n := int(rate * d.step.Seconds())
	r := Row{Workload: workload, Unit: unit, Offered: rate, Expected: n}
	limit := d.step + 20*time.Second
	args := append([]string{
		"-r", strconv.Itoa(int(rate)), "-m", strconv.Itoa(n),
		"-l", strconv.Itoa(int(rate) * 4),
	}, extra...)
	d.settle()
	cpu0 := d.cpu()
	t0 := time.Now()
	s, err := d.start(context.Background(), name, scenario, limit, args...)
	if err != nil {
		return r, err
	}
	if err := s.wait(); err != nil {
		r.Note = "sipp: " + err.Error()
		r.Truncated = true
	}
	st, err := readCSVLast(s.stat)
	if err != nil {
		return r, err
	}
	r.Ops = num(st, "SuccessfulCall(C)")
	r.Retrans = num(st, "Retransmissions(C)")
	r.Seconds = elapsed(st["ElapsedTime(C)"])
	if r.Seconds <= 0 {
		r.Seconds = time.Since(t0).Seconds()
	}
	r.Achieved = float64(r.Ops) / r.Seconds
	if r.Ops < n {
		if e := firstErrors(s.errf); e != "" && r.Note == "" {
			r.Note = e
		}
	}
	d.finish(&r, cpu0)
	return r, nil
}

// stop says whether a workload steps no further after r: too many
// failures, a step cut by a timeout, or less than half the offered rate
// achieved (the server is saturated: more would only measure the backlog).
func (d *driver) stop(r Row) bool {
	return r.FailPct > d.maxFail || r.Truncated || r.Achieved < r.Offered/2
}

func (d *driver) publish(rates []float64) error {
	for i, rate := range rates {
		r, err := d.oneShot("publish", "PUBLISH/s", fmt.Sprintf("publish_%d", i), "publish.xml", rate,
			"-key", "pfx", fmt.Sprintf("p%s.%d.", d.run, i))
		if err != nil {
			return err
		}
		if d.stop(r) {
			break
		}
	}
	return nil
}

// overload offers PUBLISHes at the peak and at twice the peak (the best
// clean step of the publish workload, or -overload-peak) and counts what
// came back: 200s (completed, the achieved rate), 503s (refused) and
// nothing (failed).
func (d *driver) overload(peak float64) error {
	if peak <= 0 {
		if r, ok := best(d.res, d.maxFail)["publish"]; ok {
			peak = r.Achieved
		}
	}
	if peak <= 0 {
		return errors.New("no peak: run the publish workload first or give -overload-peak")
	}
	for i, mult := range []float64{1, 2} {
		rate := math.Round(peak * mult)
		n := int(rate * d.step.Seconds())
		r := Row{Workload: "overload", Unit: "PUBLISH/s", Offered: rate, Expected: n}
		d.settle()
		cpu0 := d.cpu()
		t0 := time.Now()
		s, err := d.start(context.Background(), fmt.Sprintf("overload_%d", i), "publish_overload.xml", d.step+20*time.Second,
			"-r", strconv.Itoa(int(rate)), "-m", strconv.Itoa(n), "-l", strconv.Itoa(int(rate)*4),
			"-key", "pfx", fmt.Sprintf("o%s.%d.", d.run, i))
		if err != nil {
			return err
		}
		if err := s.wait(); err != nil {
			r.Note = "sipp: " + err.Error()
			r.Truncated = true
		}
		st, err := readCSVLast(s.stat)
		if err != nil {
			return err
		}
		c := counts(s.count)
		r.Ops = sum(cols(c, "200_Recv"))
		r.Rejected = sum(cols(c, "503_Recv"))
		r.Retrans = num(st, "Retransmissions(C)")
		r.Seconds = elapsed(st["ElapsedTime(C)"])
		if r.Seconds <= 0 {
			r.Seconds = time.Since(t0).Seconds()
		}
		r.Achieved = float64(r.Ops) / r.Seconds
		r.Note = strings.TrimSpace(fmt.Sprintf("%.0fx peak (%.0f/s): completed %.0f%% of the peak, %d answered 503 (%.1f%%) %s",
			mult, peak, r.Achieved/peak*100, r.Rejected, float64(r.Rejected)/float64(max(n, 1))*100, r.Note))
		d.finish(&r, cpu0)
		// Failed is what got neither a 200 nor a 503.
		last := &d.res.Rows[len(d.res.Rows)-1]
		last.Failed = max(0, last.Expected-last.Ops-last.Rejected)
		last.FailPct = float64(last.Failed) / float64(max(last.Expected, 1)) * 100
	}
	return nil
}

func (d *driver) subscribe(rates []float64, prefill int) error {
	// The presentities the watchers subscribe to, all with published state.
	pfx := fmt.Sprintf("s%s.", d.run)
	prate := 1000
	d.settle()
	s, err := d.start(context.Background(), "subscribe_prefill", "publish.xml",
		time.Duration(prefill/prate)*time.Second+30*time.Second,
		"-r", strconv.Itoa(prate), "-m", strconv.Itoa(prefill), "-l", strconv.Itoa(prate*4), "-key", "pfx", pfx)
	if err != nil {
		return err
	}
	if err := s.wait(); err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	st, err := readCSVLast(s.stat)
	if err != nil {
		return err
	}
	ok := num(st, "SuccessfulCall(C)")
	if ok < prefill {
		d.comment("subscribe: prefill published %d of %d presentities at %d/s (the rest are subscribed to without state)", ok, prefill, prate)
	}
	csv := filepath.Join(d.work, "presentities.csv")
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for i := 1; i <= prefill; i++ {
		fmt.Fprintf(&b, "%s%d;\n", pfx, i)
	}
	if err := os.WriteFile(csv, []byte(b.String()), 0o644); err != nil {
		return err
	}
	for i, rate := range rates {
		r, err := d.oneShot("subscribe", "SUBSCRIBE/s", fmt.Sprintf("subscribe_%d", i), "subscribe.xml", rate,
			"-inf", csv, "-key", "wfx", fmt.Sprintf("w%s.%d.", d.run, i))
		if err != nil {
			return err
		}
		if d.stop(r) {
			break
		}
	}
	return nil
}

// counts reads the -trace_counts file: column name -> value of the last line.
func counts(path string) map[string]string {
	m, _ := readCSVLast(path)
	return m
}

// cols returns the values of the counts columns "<index>_<suffix>" in
// scenario order (index = message position in the scenario).
func cols(m map[string]string, suffix string) []int {
	type kv struct{ i, v int }
	var out []kv
	for k, v := range m {
		idx, rest, ok := strings.Cut(k, "_")
		if !ok || rest != suffix {
			continue
		}
		i, err := strconv.Atoi(idx)
		if err != nil {
			continue
		}
		n, _ := strconv.Atoi(strings.TrimSpace(v))
		out = append(out, kv{i, n})
	}
	for a := 1; a < len(out); a++ {
		for b := a; b > 0 && out[b].i < out[b-1].i; b-- {
			out[b], out[b-1] = out[b-1], out[b]
		}
	}
	vals := make([]int, len(out))
	for i, x := range out {
		vals[i] = x.v
	}
	return vals
}

func sum(v []int) int {
	t := 0
	for _, x := range v {
		t += x
	}
	return t
}

// fanout_watch.xml: the last NOTIFY recv is the loop; the 200s sent before
// the loop answer each watcher's first NOTIFY.
func loopNotifies(m map[string]string) int {
	if v := cols(m, "NOTIFY_Recv"); len(v) > 0 {
		return v[len(v)-1]
	}
	return 0
}

func subscribed(m map[string]string) int {
	v := cols(m, "200_Sent")
	if len(v) < 2 {
		return 0
	}
	return sum(v[:len(v)-1])
}

// liveCounts finds the counts file sipp is writing (named after its pid).
func (d *driver) liveCounts(s *sippRun, scenario string) string {
	return filepath.Join(d.work, fmt.Sprintf("%s_%d_counts.csv", strings.TrimSuffix(scenario, ".xml"), s.cmd.Process.Pid))
}

// fanout: for each NOTIFY rate, a fresh presentity and d.watchers watchers
// (one sipp), then one publisher (another sipp) modifying the presentity's
// publication rate/watchers times a second in a closed loop for one step.
func (d *driver) fanout(rates []float64) error {
	for i, rate := range rates {
		pres := fmt.Sprintf("f%s.%d", d.run, i)
		pubRate := rate / float64(d.watchers)
		mods := int(math.Round(pubRate * d.step.Seconds()))
		if mods < 1 {
			mods = 1
		}
		gap := int(1000 / pubRate)
		r := Row{Workload: "fanout", Unit: "NOTIFY/s", Offered: rate}
		d.settle()
		// Setup: watchers subscribe at up to 500/s.
		wrate := 500
		if d.watchers < wrate {
			wrate = d.watchers
		}
		setup := time.Duration(d.watchers/wrate+1) * time.Second
		limit := setup + d.step*2 + 40*time.Second
		w, err := d.start(context.Background(), fmt.Sprintf("fanout_%d_watch", i), "fanout_watch.xml", limit,
			"-r", strconv.Itoa(wrate), "-m", strconv.Itoa(d.watchers), "-l", strconv.Itoa(d.watchers),
			"-key", "pres", pres, "-key", "wfx", fmt.Sprintf("fw%s.%d.", d.run, i))
		if err != nil {
			return err
		}
		// Wait until every watcher has its first NOTIFY answered.
		live := d.liveCounts(w, "fanout_watch.xml")
		ready := false
		for t := time.Now(); time.Since(t) < setup+15*time.Second && !ready; time.Sleep(200 * time.Millisecond) {
			if c := counts(live); c != nil && subscribed(c) >= d.watchers {
				ready = true
			}
		}
		if !ready {
			d.comment("fanout %.0f/s: not all of %d watchers had subscribed after %s; measured with those that had", rate, d.watchers, setup+15*time.Second)
		}
		d.settleFor(3 * time.Second) // the watchers leave after 8 s without a NOTIFY
		c0 := counts(live)
		base := loopNotifies(c0)
		cpu0 := d.cpu()
		t0 := time.Now()
		p, err := d.start(context.Background(), fmt.Sprintf("fanout_%d_publish", i), "fanout_publish.xml",
			d.step*2+20*time.Second,
			"-m", "1", "-key", "pres", pres, "-set", "max", strconv.Itoa(mods), "-set", "gap", strconv.Itoa(gap))
		if err != nil {
			w.cmd.Process.Kill()
			return err
		}
		perr := p.wait()
		pubSecs := time.Since(t0).Seconds()
		// The watchers end 8 s after their last NOTIFY.
		werr := w.wait()
		if perr != nil || werr != nil {
			r.Note = fmt.Sprint("sipp: ", errors.Join(perr, werr))
			r.Truncated = true
		}
		pst, _ := readCSVLast(p.stat)
		wc := counts(w.count)
		wst, _ := readCSVLast(w.stat)
		got := loopNotifies(wc) - base
		// NOTIFYs due: one per watcher for the new publication, each
		// modification and the removal. A server may skip intermediate
		// states (one NOTIFY in flight per dialog, coalescing): those are
		// not failures, only fewer NOTIFYs achieved. Failures are the
		// watchers that lost their subscription (failed sipp calls).
		n := subscribed(wc)
		due := (mods + 2) * n
		r.Ops = got
		r.Expected = got
		if wst != nil {
			// sipp counts the loop's idle timeout (the normal end of a
			// watcher) as a failed call: only the rest are lost watchers.
			f := num(wst, "FailedCall(C)")
			if t := cols(wc, "NOTIFY_Timeout"); len(t) > 0 {
				f -= t[len(t)-1]
			}
			if f > 0 && n > 0 {
				r.Expected = got + f*(mods+2) // what the lost watchers were due
			}
		}
		r.Note = strings.TrimSpace(fmt.Sprintf("%s %d watchers, %d state changes: %d of %d NOTIFYs due received", r.Note, n, mods+2, got, due))
		r.Seconds = pubSecs
		if pst != nil {
			if e := elapsed(pst["ElapsedTime(C)"]); e > 0 {
				r.Seconds = e
			}
			if num(pst, "SuccessfulCall(C)") != 1 {
				// The server refused a change (a 500, a 503): the load
				// offered was not served, so the NOTIFYs due for the
				// changes never made count as failed, not as coalesced.
				r.Note = strings.TrimSpace(r.Note + " publisher failed: " + firstErrors(p.errf))
				r.Expected = max(r.Expected, due)
			}
			r.Retrans += num(pst, "Retransmissions(C)")
		}
		r.Achieved = float64(got) / r.Seconds
		// NOTIFY retransmissions only: SUBSCRIBE retransmissions are setup.
		r.Retrans += sum(cols(wc, "NOTIFY_Retrans"))
		d.finish(&r, cpu0)
		if d.stop(r) {
			break
		}
	}
	return nil
}

// ---- output ---------------------------------------------------------------

func printTable(w io.Writer, res *Result) {
	fmt.Fprintf(w, "\n%s at %s, %s; server RSS before the run %d MB\n", res.Name, res.Server, res.Started.Format("2006-01-02 15:04"), res.IdleRSS/1024)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tunit\toffered\tachieved\tfailed\tfail %\t503\tretrans\tCPU µs/op\tCPU %\tRSS MB\t")
	for _, r := range res.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%d\t%.2f\t%d\t%d\t%.0f\t%.0f\t%.0f\t\n",
			r.Workload, r.Unit, r.Offered, r.Achieved, r.Failed, r.FailPct, r.Rejected, r.Retrans, r.CPUus, r.CPUPct, float64(r.RSSKB)/1024)
	}
	tw.Flush()
	if res.RestRSS > 0 {
		fmt.Fprintf(w, "server RSS after the rest: %d MB\n", res.RestRSS/1024)
	}
	for _, r := range res.Rows {
		if r.Note != "" {
			fmt.Fprintf(w, "  %s %.0f: %s\n", r.Workload, r.Offered, r.Note)
		}
	}
	for _, c := range res.Comments {
		fmt.Fprintln(w, "  note:", c)
	}
}

func load(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	return &r, json.Unmarshal(b, &r)
}

// best is, per workload, the highest achieved rate of a step within the
// failure bound.
func best(res *Result, maxFail float64) map[string]Row {
	out := map[string]Row{}
	for _, r := range res.Rows {
		if r.FailPct > maxFail {
			continue
		}
		if b, ok := out[r.Workload]; !ok || r.Achieved > b.Achieved {
			out[r.Workload] = r
		}
	}
	return out
}

func printCompare(w io.Writer, files []string) error {
	if len(files) != 2 {
		return errors.New("-compare takes two files")
	}
	a, err := load(strings.TrimSpace(files[0]))
	if err != nil {
		return err
	}
	b, err := load(strings.TrimSpace(files[1]))
	if err != nil {
		return err
	}
	printTable(w, a)
	printTable(w, b)
	fmt.Fprintf(w, "\nper step (%s / %s)\n", a.Name, b.Name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "workload\toffered\tachieved %s\tachieved %s\tratio\tfail %% %s\tfail %% %s\tretrans %s\tretrans %s\tµs/op %s\tµs/op %s\tratio\t\n",
		a.Name, b.Name, a.Name, b.Name, a.Name, b.Name, a.Name, b.Name)
	idx := map[string]Row{}
	for _, r := range b.Rows {
		idx[fmt.Sprintf("%s/%.0f", r.Workload, r.Offered)] = r
	}
	for _, ra := range a.Rows {
		rb, ok := idx[fmt.Sprintf("%s/%.0f", ra.Workload, ra.Offered)]
		if !ok {
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t-\t-\t%.2f\t-\t%d\t-\t%.0f\t-\t-\t\n", ra.Workload, ra.Offered, ra.Achieved, ra.FailPct, ra.Retrans, ra.CPUus)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%s\t%.2f\t%.2f\t%d\t%d\t%.0f\t%.0f\t%s\t\n", ra.Workload, ra.Offered,
			ra.Achieved, rb.Achieved, ratio(ra.Achieved, rb.Achieved), ra.FailPct, rb.FailPct, ra.Retrans, rb.Retrans,
			ra.CPUus, rb.CPUus, ratio(ra.CPUus, rb.CPUus))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nbest clean step (fail <= 1 %%)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "workload\tunit\t%s\t%s\t%s / %s\t\n", a.Name, b.Name, a.Name, b.Name)
	ba, bb := best(a, 1), best(b, 1)
	for _, wl := range []string{"publish", "subscribe", "fanout"} {
		x, okA := ba[wl]
		y, okB := bb[wl]
		if !okA && !okB {
			continue
		}
		unit := x.Unit
		if unit == "" {
			unit = y.Unit
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", wl, unit, rate(x, okA), rate(y, okB), ratio(x.Achieved, y.Achieved))
	}
	tw.Flush()
	return nil
}

func rate(r Row, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.0f", r.Achieved)
}

func ratio(a, b float64) string {
	if b == 0 || a == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// freeUDPPort is a UDP port on 127.0.0.1 free when asked, from the
// ephemeral range.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}
