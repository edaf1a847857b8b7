package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/presenced/presenced/internal/store"
)

// The change feed (store.Feed): every transaction that writes resource
// states sends, with NOTIFY on one channel, a line per state written:
// "version event resource", under a first line naming the writing store.
// PostgreSQL delivers a transaction's notifications when, and only if,
// it commits, in commit order, to every session listening: exactly the
// committed writes, with no table to write, read and sweep
// (RATIONALE.md, "The change feed is NOTIFY"). What a node misses while
// its listening session is cut it reads again from the tables (Resync).

// channel is the NOTIFY channel of the feed.
const channel = "presenced_changes"

// maxPayload is what one NOTIFY may carry: PostgreSQL refuses 8000 bytes
// or more. A group's lines are split over as many as they need.
const maxPayload = 7999

// resyncLine stands for a write whose line alone would not fit: the
// nodes read every resource again rather than miss it.
const resyncLine = "*"

// newNodeID names one open store in the feed, so that it skips its own
// writes.
func newNodeID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// announce queues the NOTIFYs of the resource states the batches write.
func (s *Store) announce(batch *pgx.Batch, written []*store.Batch) {
	payload := s.node
	for _, b := range written {
		for _, r := range b.Resources {
			line := strconv.FormatUint(r.Version, 10) + " " + r.Event + " " + r.Resource
			if len(s.node)+1+len(line) > maxPayload {
				line = resyncLine
			}
			if len(payload)+1+len(line) > maxPayload {
				batch.Queue(`SELECT pg_notify($1, $2)`, channel, payload)
				payload = s.node
			}
			payload += "\n" + line
		}
	}
	if payload != s.node {
		batch.Queue(`SELECT pg_notify($1, $2)`, channel, payload)
	}
}

// Follow implements store.Feed: a session of its own listens, and one
// cut (the database restarted, the network) is dialled again, every
// second until it answers, then reported with a Resync.
func (s *Store) Follow(ctx context.Context, fn func(store.Change)) error {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	conn, err := s.listen(ctx)
	if err != nil {
		stop()
		cancel()
		return err
	}
	go func() {
		defer cancel()
		defer stop()
		for {
			n, err := conn.WaitForNotification(ctx)
			if err == nil {
				s.deliver(n.Payload, fn)
				continue
			}
			conn.Close(context.Background())
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				if conn, err = s.listen(ctx); err == nil {
					break
				}
			}
			fn(store.Change{Resync: true})
		}
	}()
	return nil
}

// listen opens a session that listens on the feed's channel.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+channel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// deliver passes on the writes of one NOTIFY, unless this store made them.
func (s *Store) deliver(payload string, fn func(store.Change)) {
	node, lines, _ := strings.Cut(payload, "\n")
	if node == s.node {
		return
	}
	for _, line := range strings.Split(lines, "\n") {
		version, rest, ok := strings.Cut(line, " ")
		event, resource, ok2 := strings.Cut(rest, " ")
		v, err := strconv.ParseUint(version, 10, 64)
		if !ok || !ok2 || err != nil {
			fn(store.Change{Resync: true}) // "*", or a line no build of ours writes
			continue
		}
		fn(store.Change{Event: event, Resource: resource, Version: v})
	}
}
