//go:build unix

package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/postgres"
	"github.com/presenced/presenced/internal/store/postgres/pgtest"
)

// BenchmarkNodes is new PUBLISHes and new SUBSCRIBEs (each waiting for
// its NOTIFY) with the presence module, from 128 UDP clients spread over
// the nodes, on SQLite (one node), and on PostgreSQL with one node and
// with three: the cost of sharing a database, per operation. Besides
// ns/op (throughput) it reports cpu-µs/op, the CPU of this process
// (servers and clients) per operation, db-cpu-µs/op, PostgreSQL's
// (pgtest.ServerCPU), and store-wait-µs/op, how long an operation waited
// on its store (commits and reads, group commit included).
func BenchmarkNodes(b *testing.B) {
	for _, setup := range []struct {
		name  string
		nodes int
	}{{"sqlite", 1}, {"postgres-1", 1}, {"postgres-3", 3}} {
		for _, op := range []string{"publish", "subscribe"} {
			b.Run(setup.name+"/"+op, func(b *testing.B) {
				var dsn string
				if setup.name != "sqlite" {
					dsn = pgtest.DSN(b)
				}
				var stores []*timedStore
				var nodes []*fixture
				for range setup.nodes {
					var st store.Store
					var err error
					if dsn == "" {
						st, err = store.OpenSQLite(filepath.Join(b.TempDir(), "presenced.db"))
					} else {
						st, err = postgres.Open(context.Background(), dsn)
					}
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { st.Close() })
					ts := &timedStore{Store: st}
					stores = append(stores, ts)
					nodes = append(nodes, start(b, ts, extensiontest.Load(b, paPkg, nil)))
				}
				var n, client atomic.Int64
				b.SetParallelism(64)
				cpu, dbCPU := cpuTime(), pgtest.ServerCPU()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					p := nodes[int(client.Add(1))%len(nodes)].peer(b, "UDP")
					for pb.Next() {
						uri := fmt.Sprintf("sip:node%d@example.com", n.Add(1))
						if op == "publish" {
							if r := p.Publish("presence", uri, "application/pidf+xml", pidf(uri, "t", "open", "x")); r.StatusCode != 200 {
								b.Fatalf("PUBLISH: %d", r.StatusCode)
							}
							continue
						}
						if _, r := p.Subscribe("presence", uri, "Expires: 600"); r.StatusCode != 200 {
							b.Fatalf("SUBSCRIBE: %d", r.StatusCode)
						}
						p.Notify()
					}
				})
				b.StopTimer()
				var waited time.Duration
				for _, ts := range stores {
					waited += time.Duration(ts.waited.Load())
				}
				b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
				b.ReportMetric(float64((pgtest.ServerCPU()-dbCPU).Microseconds())/float64(b.N), "db-cpu-µs/op")
				b.ReportMetric(float64(waited.Microseconds())/float64(b.N), "store-wait-µs/op")
			})
		}
	}
}

// timedStore adds up the time spent in its store's Commit and
// LoadResource. Unwrap lets the server find the Feed and Leases beneath.
type timedStore struct {
	store.Store
	waited atomic.Int64
}

func (t *timedStore) Commit(ctx context.Context, b *store.Batch) error {
	start := time.Now()
	defer func() { t.waited.Add(int64(time.Since(start))) }()
	return t.Store.Commit(ctx, b)
}

func (t *timedStore) LoadResource(ctx context.Context, id uint64, event, resource string) (store.Resource, error) {
	start := time.Now()
	defer func() { t.waited.Add(int64(time.Since(start))) }()
	return t.Store.LoadResource(ctx, id, event, resource)
}

func (t *timedStore) Unwrap() store.Store { return t.Store }

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
