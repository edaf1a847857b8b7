// Package postgres is the store.Store kept in PostgreSQL, for several
// nodes sharing one database (or one node that wants it there). It owns
// the schema and the SQL; what a record is, and the group commit with
// its guarantee, are internal/store's.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/presenced/presenced/internal/store"
)

// Store is a store.Store in a PostgreSQL database. Commits go through one
// writer (store.CommitQueue): the batches queued while a transaction is
// being written share the next one, and its one WAL flush.
type Store struct {
	pool   *pgxpool.Pool
	q      *store.CommitQueue
	where  string // user@host:port/database, for errors: never the password
	cancel context.CancelFunc
	ctx    context.Context // ends at Close: a writer waiting for a connection gives up
	node   string          // names this store's writes in the feed (feed.go)
	epoch  atomic.Int64    // the epoch that owns the dialogs this store writes, once joined (lease.go)
}

// txTimeout bounds one group's transaction. A group that has not sent
// its COMMIT by then is rolled back, which is a definite outcome; one
// whose COMMIT got no answer is looked up (outcome).
const txTimeout = 30 * time.Second

// Open connects to the database at dsn (a postgres:// URL; a password
// may come from PGPASSWORD or ~/.pgpass instead) and brings its schema up
// to date. Errors name the user, host and database, never the password.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err) // pgconn's message leaves the password out
	}
	c := cfg.ConnConfig
	where := fmt.Sprintf("postgres %s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
	// A commit waits on a row lock at most this long (another node's
	// transaction on the same row), then fails whole, as SQLite's
	// busy_timeout makes it; the DSN may set its own.
	if _, ok := c.RuntimeParams["lock_timeout"]; !ok {
		c.RuntimeParams["lock_timeout"] = "5s"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store %s: %w", where, err)
	}
	s := &Store{pool: pool, q: store.NewCommitQueue(), where: where, node: newNodeID()}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.q.Serve(s.write)
	return s, nil
}

// Commit implements store.Store: nil once b is committed, an error only
// if it was not and will not be. A string PostgreSQL's text cannot hold
// (a NUL, bytes that are not UTF-8) fails its own commit here rather than
// the transaction of every batch grouped with it.
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	if err := storable(b); err != nil {
		return fmt.Errorf("commit not written: %w", err)
	}
	return s.q.Commit(ctx, b)
}

// write is the writer's transaction: a connection first, and only then
// the batches, so that a caller whose deadline passes while the database
// is out of reach abandons its batch. BEGIN, the transaction's id and
// every statement go in one round trip, COMMIT in a second.
func (s *Store) write(take func() []*store.Batch) error {
	conn, err := s.pool.Acquire(s.ctx)
	if err != nil {
		return fmt.Errorf("store %s: %w: %w", s.where, store.ErrUnavailable, err)
	}
	group := take()
	if len(group) == 0 {
		conn.Release()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), txTimeout)
	defer cancel()
	var xid string
	conflicts := store.Conflicts{}
	redialed := false
	for {
		hit := store.Conflicts{}
		batch := &pgx.Batch{}
		batch.Queue(`BEGIN`)
		batch.Queue(`SELECT pg_current_xact_id()::text`).QueryRow(func(r pgx.Row) error { return r.Scan(&xid) })
		var written []*store.Batch
		epoch := s.epoch.Load()
		for i, b := range group {
			if conflicts[i] == nil {
				queue(batch, b, epoch, func(why error) {
					if hit[i] == nil {
						hit[i] = why
					}
				})
				written = append(written, b)
			}
		}
		s.announce(batch, written)
		if err := conn.SendBatch(ctx, batch).Close(); err != nil {
			// No COMMIT was sent: the transaction is rolled back, on this
			// connection or by the server when it goes.
			if conn.Conn().IsClosed() && !redialed {
				// The connection was dead before the group went out: the
				// pool hands out one idle for less than a second unchecked,
				// so the first write after a short database restart (or a
				// terminated backend) met it. Once more on a new one.
				redialed = true
				conn.Release()
				if conn, err = s.pool.Acquire(ctx); err != nil {
					return fmt.Errorf("store %s: %w: %w", s.where, store.ErrUnavailable, err)
				}
				continue
			}
			if _, rerr := conn.Exec(ctx, `ROLLBACK`); rerr != nil {
				conn.Conn().Close(ctx)
			}
			conn.Release()
			return fmt.Errorf("store %s: %w", s.where, unreached(err))
		}
		if len(hit) == 0 {
			break
		}
		// A batch wrote a resource another node wrote first, or a dialog
		// another node owns: the group is rolled back and written again
		// without it (a third round trip, only then), until none
		// conflicts: each try leaves out at least one batch, so the tries
		// end.
		for i, why := range hit {
			conflicts[i] = why
		}
		if _, err := conn.Exec(ctx, `ROLLBACK`); err != nil {
			conn.Conn().Close(ctx)
			conn.Release()
			return fmt.Errorf("store %s: rollback of a conflicting group: %w", s.where, err)
		}
		if len(conflicts) == len(group) {
			conn.Release()
			return conflicts
		}
	}
	// What did not conflict is written; the rest fail with ErrConflict.
	partial := func(err error) error {
		if err == nil && len(conflicts) > 0 {
			return conflicts
		}
		return err
	}
	tag, err := conn.Exec(ctx, `COMMIT`)
	if err == nil && tag.String() != "COMMIT" {
		err = fmt.Errorf("COMMIT answered %q", tag)
	}
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		conn.Release()
		return partial(nil)
	case errors.As(err, &pgErr):
		// The server answered: the transaction was rolled back.
		conn.Release()
		return fmt.Errorf("store %s: commit: %w", s.where, unreached(err))
	}
	// COMMIT went out and no answer came back: it may or may not have
	// been applied. The server knows which; ask it on another
	// connection, since answering either way without knowing breaks the
	// Store's promise.
	conn.Conn().Close(ctx)
	conn.Release()
	return partial(s.outcome(xid, err))
}

// ErrOutcomeUnknown is the error of a commit whose COMMIT got no answer
// and whose outcome could not be learnt before the store was closed.
// Unlike every other error of Commit, it does not say the batch was not
// written.
var ErrOutcomeUnknown = errors.New("commit outcome unknown")

// outcome waits until the server can tell whether transaction xid
// committed, asking every half second, and returns nil if it did. Once
// the store is closing it asks for outcomeGrace more, no longer.
func (s *Store) outcome(xid string, cause error) error {
	var giveUp time.Time
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var status *string
		err := s.pool.QueryRow(ctx, `SELECT pg_xact_status($1::xid8)`, xid).Scan(&status)
		cancel()
		switch {
		case err == nil && status != nil && *status == "committed":
			return nil
		case err == nil && status != nil && *status == "aborted":
			return fmt.Errorf("store %s: commit lost its connection and was rolled back: %w: %w", s.where, store.ErrUnavailable, cause)
		}
		// "in progress" (the server is still at it), or no answer yet.
		if s.ctx.Err() != nil {
			if giveUp.IsZero() {
				giveUp = time.Now().Add(outcomeGrace)
			} else if time.Now().After(giveUp) {
				return fmt.Errorf("store %s: %w: COMMIT got no answer (%v), nor did the server say before the store closed", s.where, ErrOutcomeUnknown, cause)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// unreached marks err ErrUnavailable unless the server answered it for
// the statements' sake (a constraint, a lock timeout): a connection lost
// or refused (whatever the server said), or the server shutting down,
// starting or out of resources (SQLSTATE classes 08, 57P and 53), is the
// database out of reach.
func unreached(err error) error {
	var pgErr *pgconn.PgError
	var connect *pgconn.ConnectError
	if !errors.As(err, &connect) && errors.As(err, &pgErr) && !strings.HasPrefix(pgErr.Code, "08") &&
		!strings.HasPrefix(pgErr.Code, "57P") && !strings.HasPrefix(pgErr.Code, "53") {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// outcomeGrace is how long a closing store still asks for the outcome of
// a COMMIT that got no answer.
const outcomeGrace = 5 * time.Second

// list is v as the NOT NULL text[] keeps it: pgx sends a nil slice as
// NULL.
func list(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// queue adds b's statements to batch, in the order Memory and SQLite
// apply them. A resource write whose version is no longer stored touches
// no row, and calls conflict with ErrConflict. Once the store has joined
// (epoch not 0), a subscription written is the epoch's, and one another
// epoch owns is not written: conflict is called with ErrFenced.
func queue(batch *pgx.Batch, b *store.Batch, epoch int64, conflict func(error)) {
	if epoch != 0 {
		fence(batch, b, epoch, conflict)
	}
	for _, v := range b.Subscriptions {
		// A rewrite of a subscription (refresh, new state) never lowers
		// the CSeq the NOTIFY path reserved meanwhile.
		batch.Queue(`INSERT INTO subscriptions (id, call_id, local_tag, remote_tag, local_uri, remote_uri, remote_target,
				route_set, transport, source, event, event_id, resource, accept, expires, local_cseq, remote_cseq, state, status, created, owner)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
			ON CONFLICT (id) DO UPDATE SET call_id = $2, local_tag = $3, remote_tag = $4, local_uri = $5, remote_uri = $6,
				remote_target = $7, route_set = $8, transport = $9, source = $10, event = $11, event_id = $12, resource = $13,
				accept = $14, expires = $15, local_cseq = GREATEST(subscriptions.local_cseq, $16), remote_cseq = $17,
				state = $18, status = $19, created = $20`,
			v.ID, v.CallID, v.LocalTag, v.RemoteTag, v.LocalURI, v.RemoteURI, v.RemoteTarget, list(v.RouteSet),
			v.Transport, v.Source, v.Event, v.EventID, v.Resource, list(v.Accept), v.Expires,
			int64(v.LocalCSeq), int64(v.RemoteCSeq), v.State, v.Status, v.Created, epoch)
	}
	for _, v := range b.SubscriptionStates {
		batch.Queue(`UPDATE subscriptions SET state = $1, status = $2 WHERE id = $3`, v.State, v.Status, v.ID)
	}
	for _, id := range b.DeleteSubscriptions {
		batch.Queue(`DELETE FROM subscriptions WHERE id = $1`, id)
	}
	for _, v := range b.Publications {
		batch.Queue(`INSERT INTO publications (id, etag, event, resource, content_type, size, expires)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (id) DO UPDATE SET etag = $2, event = $3, resource = $4, content_type = $5, size = $6, expires = $7`,
			v.ID, v.ETag, v.Event, v.Resource, v.ContentType, int64(v.Size), v.Expires)
	}
	for _, r := range b.PublicationRefreshes {
		batch.Queue(`UPDATE publications SET etag = $1, expires = $2 WHERE id = $3`, r.ETag, r.Expires, r.ID)
	}
	for _, ref := range b.DeletePublications {
		batch.Queue(`DELETE FROM publications WHERE id = $1 AND etag = $2`, ref.ID, ref.ETag).
			Exec(func(tag pgconn.CommandTag) error {
				if tag.RowsAffected() != 1 {
					conflict(store.ErrStalePublication)
				}
				return nil
			})
	}
	// Each resource statement touches one row if the version it names
	// (Prev) is the one stored. Under READ COMMITTED a statement on a row
	// another transaction is writing waits for it and then checks the
	// version that transaction left, so two nodes cannot both land. A new
	// state with no Prev inserts a row that must not exist, an empty
	// state with none checks that none does.
	for _, v := range b.Resources {
		var q *pgx.QueuedQuery
		switch {
		case len(v.State) == 0 && v.Prev == 0:
			q = batch.Queue(`SELECT WHERE NOT EXISTS (SELECT FROM resources WHERE event = $1 AND resource = $2)`,
				v.Event, v.Resource)
		case len(v.State) == 0:
			q = batch.Queue(`DELETE FROM resources WHERE event = $1 AND resource = $2 AND version = $3`,
				v.Event, v.Resource, int64(v.Prev))
		case v.Prev == 0:
			q = batch.Queue(`INSERT INTO resources (event, resource, state, version) VALUES ($1, $2, $3, $4)
				ON CONFLICT (event, resource) DO NOTHING`, v.Event, v.Resource, v.State, int64(v.Version))
		default:
			q = batch.Queue(`UPDATE resources SET state = $3, version = $4 WHERE event = $1 AND resource = $2 AND version = $5`,
				v.Event, v.Resource, v.State, int64(v.Version), int64(v.Prev))
		}
		q.Exec(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != 1 {
				conflict(store.ErrConflict)
			}
			return nil
		})
	}
	for _, v := range b.Bindings {
		batch.Queue(`INSERT INTO bindings (id, aor, contact, q, call_id, cseq, expires, instance, reg_id, path)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (id) DO UPDATE SET aor = $2, contact = $3, q = $4, call_id = $5, cseq = $6, expires = $7,
				instance = $8, reg_id = $9, path = $10`,
			v.ID, v.AOR, v.Contact, v.Q, v.CallID, int64(v.CSeq), v.Expires, v.Instance, int64(v.RegID), list(v.Path))
	}
	for _, id := range b.DeleteBindings {
		batch.Queue(`DELETE FROM bindings WHERE id = $1`, id)
	}
	for _, c := range b.NotifyCSeqs {
		batch.Queue(`UPDATE subscriptions SET local_cseq = $1 WHERE id = $2 AND local_cseq < $1`, int64(c.CSeq), c.ID)
	}
}

// storable reports the first string of b that a text column refuses.
func storable(b *store.Batch) error {
	var bad string
	check := func(what string, v ...string) {
		for _, s := range v {
			if bad == "" && (strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s)) {
				bad = fmt.Sprintf("%s holds %q, which is not UTF-8 text without NUL", what, s)
			}
		}
	}
	for _, v := range b.Subscriptions {
		check("subscription "+v.ID, v.ID, v.CallID, v.LocalTag, v.RemoteTag, v.LocalURI, v.RemoteURI, v.RemoteTarget,
			v.Transport, v.Source, v.Event, v.EventID, v.Resource, v.Status)
		check("subscription "+v.ID, v.RouteSet...)
		check("subscription "+v.ID, v.Accept...)
	}
	for _, v := range b.SubscriptionStates {
		check("subscription state "+v.ID, v.ID, v.Status)
	}
	check("subscription deletion", b.DeleteSubscriptions...)
	for _, v := range b.Publications {
		check("publication "+v.ID, v.ID, v.ETag, v.Event, v.Resource, v.ContentType)
	}
	for _, r := range b.PublicationRefreshes {
		check("publication refresh "+r.ID, r.ID, r.ETag)
	}
	for _, r := range b.DeletePublications {
		check("publication deletion "+r.ID, r.ID, r.ETag)
	}
	for _, v := range b.Resources {
		check("resource "+v.Resource, v.Event, v.Resource)
	}
	for _, v := range b.Bindings {
		check("binding "+v.ID, v.ID, v.AOR, v.Contact, v.Q, v.CallID, v.Instance)
		check("binding "+v.ID, v.Path...)
	}
	check("binding deletion", b.DeleteBindings...)
	for _, c := range b.NotifyCSeqs {
		check("CSeq of subscription", c.ID)
	}
	if bad != "" {
		return errors.New(bad)
	}
	return nil
}

// Load implements store.Store. Its queries share one REPEATABLE READ
// transaction, one snapshot of the database: a commit landing between two
// of them would give a snapshot mixing batches.
func (s *Store) Load(ctx context.Context) (*store.Snapshot, error) {
	var snap *store.Snapshot
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var err error
			snap, err = load(ctx, tx, s.epoch.Load())
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("load store %s: %w", s.where, err)
	}
	return snap, nil
}

const publicationColumns = `id, etag, event, resource, content_type, size, expires`

func scanPublication(r pgx.CollectableRow) (v store.Publication, err error) {
	var size int64
	err = r.Scan(&v.ID, &v.ETag, &v.Event, &v.Resource, &v.ContentType, &size, &v.Expires)
	v.Size = int(size)
	return v, err
}

// load reads every record; once the store has joined (epoch not 0),
// only the subscriptions its epoch owns.
func load(ctx context.Context, tx pgx.Tx, epoch int64) (*store.Snapshot, error) {
	snap := &store.Snapshot{}
	rows, err := tx.Query(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions WHERE $1 = 0 OR owner = $1`, epoch)
	if err != nil {
		return nil, err
	}
	if snap.Subscriptions, err = pgx.CollectRows(rows, scanSubscription); err != nil {
		return nil, err
	}
	snap.Publications, err = collect(ctx, tx, `SELECT `+publicationColumns+` FROM publications`, scanPublication)
	if err != nil {
		return nil, err
	}
	snap.Resources, err = collect(ctx, tx, `SELECT event, resource, state, version FROM resources`,
		func(r pgx.CollectableRow) (v store.Resource, err error) {
			var version int64
			err = r.Scan(&v.Event, &v.Resource, &v.State, &version)
			v.Version = uint64(version)
			return v, err
		})
	if err != nil {
		return nil, err
	}
	snap.Bindings, err = collect(ctx, tx, `SELECT id, aor, contact, q, call_id, cseq, expires, instance, reg_id, path FROM bindings`,
		func(r pgx.CollectableRow) (v store.Binding, err error) {
			var cseq, regID int64
			err = r.Scan(&v.ID, &v.AOR, &v.Contact, &v.Q, &v.CallID, &cseq, &v.Expires, &v.Instance, &regID, &v.Path)
			v.CSeq, v.RegID = uint32(cseq), uint32(regID)
			return v, err
		})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

func collect[T any](ctx context.Context, tx pgx.Tx, sql string, scan pgx.RowToFunc[T]) ([]T, error) {
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scan)
}

// subscriptionColumns are what scanSubscription reads, in its order.
const subscriptionColumns = `id, call_id, local_tag, remote_tag, local_uri, remote_uri, remote_target,
	route_set, transport, source, event, event_id, resource, accept, expires, local_cseq, remote_cseq, state, status, created`

func scanSubscription(r pgx.CollectableRow) (v store.Subscription, err error) {
	var local, remote int64
	err = r.Scan(&v.ID, &v.CallID, &v.LocalTag, &v.RemoteTag, &v.LocalURI, &v.RemoteURI, &v.RemoteTarget,
		&v.RouteSet, &v.Transport, &v.Source, &v.Event, &v.EventID, &v.Resource, &v.Accept, &v.Expires,
		&local, &remote, &v.State, &v.Status, &v.Created)
	v.LocalCSeq, v.RemoteCSeq = uint32(local), uint32(remote)
	return v, err
}

// LoadResource implements store.Store. Rows are found by URI, which
// every node knows (store.Resource): the id is not kept.
func (s *Store) LoadResource(ctx context.Context, _ uint64, event, resource string) (store.Resource, error) {
	r := store.Resource{Event: event, Resource: resource}
	var version int64
	err := s.pool.QueryRow(ctx, `SELECT state, version FROM resources WHERE event = $1 AND resource = $2`,
		event, resource).Scan(&r.State, &version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return r, nil
	case err != nil:
		return r, fmt.Errorf("load resource %s from store %s: %w", resource, s.where, unreached(err))
	}
	r.Version = uint64(version)
	return r, nil
}

// LoadPublications implements store.Store, by URI as LoadResource
// (the index publications_resource finds them).
func (s *Store) LoadPublications(ctx context.Context, _ uint64, event, resource string) ([]store.Publication, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+publicationColumns+` FROM publications WHERE resource = $1 AND event = $2 ORDER BY id`,
		resource, event)
	var ps []store.Publication
	if err == nil {
		ps, err = pgx.CollectRows(rows, scanPublication)
	}
	if err != nil {
		return nil, fmt.Errorf("load publications of %s from store %s: %w", resource, s.where, unreached(err))
	}
	return ps, nil
}

// LoadSubscriptions implements store.Store, by the primary key.
func (s *Store) LoadSubscriptions(ctx context.Context, ids []string) ([]store.Subscription, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions WHERE id = ANY($1)`, ids)
	var subs []store.Subscription
	if err == nil {
		subs, err = pgx.CollectRows(rows, scanSubscription)
	}
	if err != nil {
		return nil, fmt.Errorf("load subscriptions from store %s: %w", s.where, unreached(err))
	}
	return subs, nil
}

// Close refuses what is still queued, waits for the transaction being
// written, and closes the connections.
func (s *Store) Close() error {
	s.cancel()
	s.q.Close()
	s.pool.Close()
	return nil
}
