package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // pure Go: the build stays cgo-free
)

// SQLite is the embedded durable store: one file an operator can open with
// sqlite3. Commits from concurrent requests are grouped into one
// transaction (group commit): a writer goroutine takes every batch queued
// while the previous transaction was syncing, so the cost of an fsync is
// shared by all the requests waiting on it.
type SQLite struct {
	db    *sql.DB
	queue chan *pendingCommit
	done  chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	closed bool
}

type pendingCommit struct {
	b   *Batch
	err chan error
}

// maxGroup bounds how many batches share one transaction, so one slow
// group cannot grow without limit.
const maxGroup = 512

// schemaVersion is the version this build writes; migrations[i] takes a
// file from version i to i+1.
const schemaVersion = 1

var migrations = []string{
	`CREATE TABLE subscriptions (
		id TEXT PRIMARY KEY,
		call_id TEXT NOT NULL, local_tag TEXT NOT NULL, remote_tag TEXT NOT NULL,
		local_uri TEXT NOT NULL, remote_uri TEXT NOT NULL, remote_target TEXT NOT NULL,
		route_set TEXT NOT NULL,      -- one Record-Route value per line
		transport TEXT NOT NULL, source TEXT NOT NULL,
		event TEXT NOT NULL, event_id TEXT NOT NULL, resource TEXT NOT NULL,
		accept TEXT NOT NULL,         -- one media type per line
		expires INTEGER NOT NULL,     -- unix milliseconds
		local_cseq INTEGER NOT NULL, remote_cseq INTEGER NOT NULL,
		state BLOB, status TEXT NOT NULL, created INTEGER NOT NULL
	);
	CREATE INDEX subscriptions_resource ON subscriptions(event, resource);
	CREATE TABLE publications (
		id TEXT PRIMARY KEY, etag TEXT NOT NULL UNIQUE,
		event TEXT NOT NULL, resource TEXT NOT NULL,
		content_type TEXT NOT NULL, body BLOB NOT NULL,
		expires INTEGER NOT NULL
	);
	CREATE INDEX publications_resource ON publications(event, resource);
	CREATE TABLE resources (
		event TEXT NOT NULL, resource TEXT NOT NULL, state BLOB NOT NULL,
		PRIMARY KEY (event, resource)
	);
	CREATE TABLE bindings (
		id TEXT PRIMARY KEY, aor TEXT NOT NULL, contact TEXT NOT NULL, q TEXT NOT NULL,
		call_id TEXT NOT NULL, cseq INTEGER NOT NULL, expires INTEGER NOT NULL
	);
	CREATE INDEX bindings_aor ON bindings(aor);`,
}

// OpenSQLite opens (creating if needed) the store file at path and brings
// its schema up to date. A file written by a newer presenced is refused.
func OpenSQLite(path string) (*SQLite, error) {
	// WAL lets readers (an operator's sqlite3) work beside the writer;
	// synchronous=FULL makes a commit survive a power cut, not only a
	// process crash; busy_timeout covers an operator holding a lock.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; group commit does the batching
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	s := &SQLite{db: db, queue: make(chan *pendingCommit, 4096), done: make(chan struct{})}
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

func migrate(db *sql.DB) error {
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if v > schemaVersion {
		return fmt.Errorf("schema version %d was written by a newer presenced (this one knows up to %d); refusing to touch it", v, schemaVersion)
	}
	for ; v < schemaVersion; v++ {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration to version %d: %w", v+1, err)
		}
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

var errClosed = errors.New("store closed")

// Commit implements Store: it returns once b is on disk.
func (s *SQLite) Commit(ctx context.Context, b *Batch) error {
	if b.Empty() {
		return nil
	}
	p := &pendingCommit{b: b, err: make(chan error, 1)}
	select {
	case s.queue <- p:
	case <-s.done:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.err:
		return err
	case <-ctx.Done():
		// The batch may still commit; the caller treats it as failed and
		// answers 500, which is safe: a retried request is idempotent.
		return ctx.Err()
	}
}

func (s *SQLite) writer() {
	defer s.wg.Done()
	for {
		var group []*pendingCommit
		select {
		case p := <-s.queue:
			group = append(group, p)
		case <-s.done:
			for {
				select {
				case p := <-s.queue:
					p.err <- errClosed
				default:
					return
				}
			}
		}
	more:
		for len(group) < maxGroup {
			select {
			case p := <-s.queue:
				group = append(group, p)
			default:
				break more
			}
		}
		err := s.write(group)
		for _, p := range group {
			p.err <- err
		}
	}
}

// write applies a group of batches in one transaction, in order.
func (s *SQLite) write(group []*pendingCommit) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	for _, p := range group {
		if err := apply(tx, p.b); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func lines(v []string) string { return strings.Join(v, "\n") }

func unlines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func apply(tx *sql.Tx, b *Batch) error {
	for _, v := range b.Subscriptions {
		_, err := tx.Exec(`INSERT OR REPLACE INTO subscriptions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			v.ID, v.CallID, v.LocalTag, v.RemoteTag, v.LocalURI, v.RemoteURI, v.RemoteTarget, lines(v.RouteSet),
			v.Transport, v.Source, v.Event, v.EventID, v.Resource, lines(v.Accept), ms(v.Expires),
			v.LocalCSeq, v.RemoteCSeq, v.State, v.Status, ms(v.Created))
		if err != nil {
			return fmt.Errorf("subscription: %w", err)
		}
	}
	for _, id := range b.DeleteSubscriptions {
		if _, err := tx.Exec(`DELETE FROM subscriptions WHERE id = ?`, id); err != nil {
			return err
		}
	}
	for _, v := range b.Publications {
		_, err := tx.Exec(`INSERT OR REPLACE INTO publications VALUES (?,?,?,?,?,?,?)`,
			v.ID, v.ETag, v.Event, v.Resource, v.ContentType, v.Body, ms(v.Expires))
		if err != nil {
			return fmt.Errorf("publication: %w", err)
		}
	}
	for _, id := range b.DeletePublications {
		if _, err := tx.Exec(`DELETE FROM publications WHERE id = ?`, id); err != nil {
			return err
		}
	}
	for _, v := range b.Resources {
		var err error
		if len(v.State) == 0 {
			_, err = tx.Exec(`DELETE FROM resources WHERE event = ? AND resource = ?`, v.Event, v.Resource)
		} else {
			_, err = tx.Exec(`INSERT OR REPLACE INTO resources VALUES (?,?,?)`, v.Event, v.Resource, v.State)
		}
		if err != nil {
			return fmt.Errorf("resource: %w", err)
		}
	}
	for _, v := range b.Bindings {
		_, err := tx.Exec(`INSERT OR REPLACE INTO bindings VALUES (?,?,?,?,?,?,?)`,
			v.ID, v.AOR, v.Contact, v.Q, v.CallID, v.CSeq, ms(v.Expires))
		if err != nil {
			return fmt.Errorf("binding: %w", err)
		}
	}
	for _, id := range b.DeleteBindings {
		if _, err := tx.Exec(`DELETE FROM bindings WHERE id = ?`, id); err != nil {
			return err
		}
	}
	for _, c := range b.NotifyCSeqs {
		if _, err := tx.Exec(`UPDATE subscriptions SET local_cseq = ? WHERE id = ? AND local_cseq < ?`, c.CSeq, c.ID, c.CSeq); err != nil {
			return err
		}
	}
	return nil
}

// Load implements Store.
func (s *SQLite) Load(ctx context.Context) (*Snapshot, error) {
	snap := &Snapshot{}
	rows, err := s.db.QueryContext(ctx, `SELECT id, call_id, local_tag, remote_tag, local_uri, remote_uri, remote_target,
		route_set, transport, source, event, event_id, resource, accept, expires, local_cseq, remote_cseq, state, status, created
		FROM subscriptions`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var v Subscription
		var routes, accept string
		var exp, created int64
		if err := rows.Scan(&v.ID, &v.CallID, &v.LocalTag, &v.RemoteTag, &v.LocalURI, &v.RemoteURI, &v.RemoteTarget,
			&routes, &v.Transport, &v.Source, &v.Event, &v.EventID, &v.Resource, &accept, &exp, &v.LocalCSeq,
			&v.RemoteCSeq, &v.State, &v.Status, &created); err != nil {
			rows.Close()
			return nil, err
		}
		v.RouteSet, v.Accept = unlines(routes), unlines(accept)
		v.Expires, v.Created = time.UnixMilli(exp), time.UnixMilli(created)
		snap.Subscriptions = append(snap.Subscriptions, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	rows, err = s.db.QueryContext(ctx, `SELECT id, etag, event, resource, content_type, body, expires FROM publications`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var v Publication
		var exp int64
		if err := rows.Scan(&v.ID, &v.ETag, &v.Event, &v.Resource, &v.ContentType, &v.Body, &exp); err != nil {
			rows.Close()
			return nil, err
		}
		v.Expires = time.UnixMilli(exp)
		snap.Publications = append(snap.Publications, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	rows, err = s.db.QueryContext(ctx, `SELECT event, resource, state FROM resources`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var v Resource
		if err := rows.Scan(&v.Event, &v.Resource, &v.State); err != nil {
			rows.Close()
			return nil, err
		}
		snap.Resources = append(snap.Resources, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	rows, err = s.db.QueryContext(ctx, `SELECT id, aor, contact, q, call_id, cseq, expires FROM bindings`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v Binding
		var exp int64
		if err := rows.Scan(&v.ID, &v.AOR, &v.Contact, &v.Q, &v.CallID, &v.CSeq, &exp); err != nil {
			return nil, err
		}
		v.Expires = time.UnixMilli(exp)
		snap.Bindings = append(snap.Bindings, v)
	}
	return snap, rows.Err()
}

// Close waits for queued commits to finish and closes the file.
func (s *SQLite) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.done)
	s.wg.Wait()
	return s.db.Close()
}
