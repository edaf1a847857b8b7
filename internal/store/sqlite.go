package store

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // pure Go: the build stays cgo-free
)

// SQLite is the embedded durable store: one file an operator can open with
// sqlite3. Commits from concurrent requests are grouped into one
// transaction (group commit): a writer goroutine takes every batch queued
// while the previous transaction was syncing, so the cost of an fsync is
// shared by all the requests waiting on it.
type SQLite struct {
	db *sql.DB
	// conn is db's one connection, the writer's for good: it runs its
	// statements on the driver's connection (stmts).
	conn  *sql.Conn
	stmts stmts
	q     *CommitQueue
	// read answers Load, LoadResource and LoadPublications beside the
	// writer: its connection is the writer's for a whole group commit,
	// and a state read back for a request would wait behind it (WAL lets
	// readers run beside a writer, and they see every commit that
	// returned).
	read             *sql.DB
	readRes, readPub *sql.Stmt
}

// schemaVersion is the version this build writes; migrations[i] takes a
// file from version i to i+1.
const schemaVersion = 7

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
	// 2: no index the server never reads by. Every row is written and
	// deleted by its key and read back only by a full load at start, and
	// each index on a random key (URIs, ETags) cost a page of its own per
	// row in the WAL: 4 to 5 times the commit cost (RATIONALE.md). Tables
	// keyed by a text key are WITHOUT ROWID (one b-tree, not two); the
	// publications' key is time-ordered, so their rows append.
	`DROP INDEX subscriptions_resource;
	DROP INDEX publications_resource;
	DROP INDEX bindings_aor;
	CREATE TABLE subscriptions2 (
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
	) WITHOUT ROWID;
	INSERT INTO subscriptions2 SELECT * FROM subscriptions;
	DROP TABLE subscriptions;
	ALTER TABLE subscriptions2 RENAME TO subscriptions;
	CREATE TABLE publications2 (
		id TEXT PRIMARY KEY, etag TEXT NOT NULL,
		event TEXT NOT NULL, resource TEXT NOT NULL,
		content_type TEXT NOT NULL, body BLOB NOT NULL,
		expires INTEGER NOT NULL
	) WITHOUT ROWID;
	INSERT INTO publications2 SELECT * FROM publications;
	DROP TABLE publications;
	ALTER TABLE publications2 RENAME TO publications;
	CREATE TABLE resources2 (
		event TEXT NOT NULL, resource TEXT NOT NULL, state BLOB NOT NULL,
		PRIMARY KEY (event, resource)
	) WITHOUT ROWID;
	INSERT INTO resources2 SELECT * FROM resources;
	DROP TABLE resources;
	ALTER TABLE resources2 RENAME TO resources;
	CREATE TABLE bindings2 (
		id TEXT PRIMARY KEY, aor TEXT NOT NULL, contact TEXT NOT NULL, q TEXT NOT NULL,
		call_id TEXT NOT NULL, cseq INTEGER NOT NULL, expires INTEGER NOT NULL
	) WITHOUT ROWID;
	INSERT INTO bindings2 SELECT * FROM bindings;
	DROP TABLE bindings;
	ALTER TABLE bindings2 RENAME TO bindings;`,
	// 3: a publication's body is not kept, only its size. The module's
	// state blob holds what it needs of the body, so every PUBLISH wrote
	// the body twice and the row's copy was read back only for its length.
	// The CAST counts bytes even if a body was stored as text.
	`CREATE TABLE publications3 (
		id TEXT PRIMARY KEY, etag TEXT NOT NULL,
		event TEXT NOT NULL, resource TEXT NOT NULL,
		content_type TEXT NOT NULL, size INTEGER NOT NULL,
		expires INTEGER NOT NULL
	) WITHOUT ROWID;
	INSERT INTO publications3
		SELECT id, etag, event, resource, content_type, length(CAST(body AS BLOB)), expires FROM publications;
	DROP TABLE publications;
	ALTER TABLE publications3 RENAME TO publications;`,
	// 4: a binding keeps the instance and reg-id that identify it (RFC
	// 5626, RFC 5627) and the Path of its REGISTER (RFC 3327). Existing
	// bindings had none of them.
	`ALTER TABLE bindings ADD COLUMN instance TEXT NOT NULL DEFAULT '';
	ALTER TABLE bindings ADD COLUMN reg_id INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE bindings ADD COLUMN path TEXT NOT NULL DEFAULT '';  -- one URI per line`,
	// 5: a subscription's per-watcher state and status, which every
	// NOTIFY rewrites, in a narrow table of their own: a crowd's
	// rendering rewrote 1,000 rows of 20 columns, some 70 pages of the
	// table, every one written whole to the WAL (RATIONALE.md). Both
	// rows of a subscription are written and deleted together.
	`CREATE TABLE subscription_states (
		id TEXT PRIMARY KEY, state BLOB, status TEXT NOT NULL
	) WITHOUT ROWID;
	INSERT INTO subscription_states SELECT id, state, status FROM subscriptions;
	ALTER TABLE subscriptions DROP COLUMN state;
	ALTER TABLE subscriptions DROP COLUMN status;`,
	// 6: resource states keyed by the time-ordered ID the server gives
	// each resource (a rowid table), not by their URIs: a new
	// presentity's row appends instead of dirtying a random page of the
	// table, a third of a PUBLISH's commit (RATIONALE.md). Nothing reads
	// them by URI, so no index does. Rows kept get ids in key order,
	// below every id a server hands out (it starts above the largest).
	`CREATE TABLE resources6 (
		id INTEGER PRIMARY KEY, event TEXT NOT NULL, resource TEXT NOT NULL, state BLOB NOT NULL
	);
	INSERT INTO resources6 (event, resource, state) SELECT event, resource, state FROM resources ORDER BY event, resource;
	DROP TABLE resources;
	ALTER TABLE resources6 RENAME TO resources;`,
	// 7: a resource's publications in its row (column pubs, one a line:
	// encodePubs), the publications table gone: a PUBLISH to a new
	// presentity writes one row, not two, and a presentity's every
	// record can be read back by its id alone (RATIONALE.md). A
	// publication whose resource had no state row gets a row with an
	// empty state; one of a resource kept in two rows goes to the newer.
	// The two indexes serve this migration only.
	`ALTER TABLE resources ADD COLUMN pubs TEXT NOT NULL DEFAULT '';
	CREATE INDEX publications_move ON publications(event, resource, id);
	CREATE INDEX resources_move ON resources(event, resource);
	INSERT INTO resources (event, resource, state)
		SELECT DISTINCT event, resource, x'' FROM publications p
		WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.event = p.event AND r.resource = p.resource);
	UPDATE resources SET pubs = coalesce((SELECT group_concat(line, char(10)) FROM (
			SELECT id || char(9) || etag || char(9) || size || char(9) || expires || char(9) || content_type AS line
			FROM publications p WHERE p.event = resources.event AND p.resource = resources.resource ORDER BY id)), '')
		WHERE id = (SELECT max(id) FROM resources r WHERE r.event = resources.event AND r.resource = resources.resource);
	DROP INDEX resources_move;
	DROP TABLE publications;`,
}

// OpenSQLite opens (creating if needed) the store file at path and brings
// its schema up to date. A file written by a newer presenced is refused,
// and so are files that would open without the state they hold: an empty
// file, a damaged -wal, a database that fails integrity_check.
func OpenSQLite(path string) (*SQLite, error) {
	// WAL lets readers (an operator's sqlite3) work beside the writer;
	// synchronous=FULL makes a commit survive a power cut, not only a
	// process crash; busy_timeout covers an operator holding a lock.
	// Transactions begin IMMEDIATE, taking the write lock first: the
	// writer takes batches only once it holds it, so that a taken batch
	// is one transaction from its outcome, however long a lock is held.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(ON)&_txlock=immediate"
	if err := checkFiles(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; group commit does the batching
	if err := integrityCheck(db, path); err != nil {
		db.Close()
		return nil, err
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	read, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	read.SetMaxOpenConns(2)
	s := &SQLite{db: db, q: NewCommitQueue(), read: read}
	// The URI is checked too, for free (the row is found by id): an id
	// never names another resource's state.
	s.readRes, err = read.Prepare(`SELECT state FROM resources WHERE id = ? AND event = ? AND resource = ?`)
	if err == nil {
		s.readPub, err = read.Prepare(`SELECT pubs FROM resources WHERE id = ? AND event = ? AND resource = ?`)
	}
	if err == nil {
		s.conn, err = db.Conn(context.Background())
	}
	if err == nil {
		err = s.conn.Raw(s.stmts.prepare)
	}
	if err != nil {
		if s.conn != nil {
			s.conn.Raw(func(any) error { return s.stmts.close() })
			s.conn.Close()
		}
		db.Close()
		read.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	go s.q.Serve(s.write)
	return s, nil
}

// stmts are the writer's statements, prepared once (preparing each
// statement per row was a third of the store's CPU under load) on the
// driver's connection and run there: through database/sql, each
// execution also took a Stmt bound to the transaction, converted its
// arguments one by one and built a Result (RATIONALE.md).
type stmts struct {
	subState, subStates, delSub, delSubState, delRes, delBind, cseq driver.StmtExecContext
	putState, addPub, putRow, putPubs                               driver.StmtExecContext
	getPubs                                                         driver.StmtQueryContext
	putSub, putSubState, putBind                                    inserts

	open []driver.Stmt       // every one prepared, for close
	args []driver.NamedValue // exec's, reused: one writer runs them
}

// subStatesRun is how many subscriptions one statement gives the same
// state and status (stmts.subStates): a crowd's rendering gives a
// thousand watchers one document, so one per-watcher state, and with a
// thousand UPDATEs of one row each the writer was a fifth of a fan-out's
// CPU (RATIONALE.md).
const subStatesRun = 64

// prepare is called with the writer's driver connection.
func (st *stmts) prepare(dc any) error {
	c, ok := dc.(driver.ConnPrepareContext)
	if _, begins := dc.(driver.ConnBeginTx); !ok || !begins {
		return fmt.Errorf("sqlite driver connection %T cannot prepare or begin with a context", dc)
	}
	for _, p := range []struct {
		s   *driver.StmtExecContext
		sql string
	}{
		// OR IGNORE: an UPDATE that may abort half-way (status is NOT
		// NULL) keeps a statement journal of every page it changes, and
		// 64 rows in no order of theirs spill it to a temporary file:
		// 41 % of a fan-out's commit (RATIONALE.md). A status bound here
		// is a Go string, never NULL, so the clause skips no row; an
		// error of the file (disk full, I/O) still fails the statement,
		// and write rolls the whole transaction back, as before.
		{&st.subState, `UPDATE OR IGNORE subscription_states SET state = ?, status = ? WHERE id = ?`},
		{&st.subStates, `UPDATE OR IGNORE subscription_states SET state = ?, status = ? WHERE id IN (?` +
			strings.Repeat(",?", subStatesRun-1) + `)`},
		{&st.delSub, `DELETE FROM subscriptions WHERE id = ?`},
		{&st.delSubState, `DELETE FROM subscription_states WHERE id = ?`},
		// A state alone keeps the row's publications.
		{&st.putState, `INSERT INTO resources (id, event, resource, state) VALUES (?,?,?,?)
			ON CONFLICT (id) DO UPDATE SET state = excluded.state`},
		// A publication not in the row yet, a line appended (with the
		// state, if ?4 is not NULL): the writer's one statement for a new
		// publication. The row is left as it was, and no change counted,
		// if it holds one of that id already.
		{&st.addPub, `INSERT INTO resources (id, event, resource, state, pubs) VALUES (?1, ?2, ?3, coalesce(?4, x''), ?5)
			ON CONFLICT (id) DO UPDATE SET state = coalesce(?4, state), pubs = iif(pubs = '', ?5, pubs || char(10) || ?5)
			WHERE instr(char(10) || pubs, char(10) || ?6 || char(9)) = 0`},
		{&st.putRow, `INSERT OR REPLACE INTO resources VALUES (?,?,?,?,?)`},
		{&st.putPubs, `UPDATE resources SET pubs = ? WHERE id = ?`},
		{&st.delRes, `DELETE FROM resources WHERE id = ?`},
		{&st.delBind, `DELETE FROM bindings WHERE id = ?`},
		{&st.cseq, `UPDATE subscriptions SET local_cseq = ? WHERE id = ? AND local_cseq < ?`},
	} {
		var err error
		if *p.s, err = st.prepareOne(c, p.sql); err != nil {
			return err
		}
	}
	// A rewrite of a subscription (refresh, new state) never lowers the
	// CSeq the NOTIFY path reserved meanwhile. An upsert, not a REPLACE
	// with the stored CSeq read in a subquery, which a statement of many
	// rows would read before writing any of them.
	st.putSub = inserts{table: "subscriptions", width: 18, verb: "INSERT", tail: ` ON CONFLICT (id) DO UPDATE SET
		call_id = excluded.call_id, local_tag = excluded.local_tag, remote_tag = excluded.remote_tag,
		local_uri = excluded.local_uri, remote_uri = excluded.remote_uri, remote_target = excluded.remote_target,
		route_set = excluded.route_set, transport = excluded.transport, source = excluded.source,
		event = excluded.event, event_id = excluded.event_id, resource = excluded.resource, accept = excluded.accept,
		expires = excluded.expires, local_cseq = max(excluded.local_cseq, local_cseq),
		remote_cseq = excluded.remote_cseq, created = excluded.created`}
	st.putSubState = inserts{table: "subscription_states", width: 3}
	st.putBind = inserts{table: "bindings", width: 10}
	stmt, err := st.prepareStmt(c, `SELECT pubs, length(state) FROM resources WHERE id = ?`)
	if err != nil {
		return err
	}
	if st.getPubs, ok = stmt.(driver.StmtQueryContext); !ok {
		return fmt.Errorf("sqlite driver statement %T cannot query with a context", stmt)
	}
	for _, in := range st.inserts() {
		row := "(?" + strings.Repeat(",?", in.width-1) + ")"
		for k := range in.by {
			var err error
			verb := cmp.Or(in.verb, "INSERT OR REPLACE")
			q := verb + " INTO " + in.table + " VALUES " + row + strings.Repeat(","+row, 1<<k-1) + in.tail
			if in.by[k], err = st.prepareOne(c, q); err != nil {
				return err
			}
		}
	}
	return nil
}

// prepareStmt prepares q on the writer's connection, kept for close.
func (st *stmts) prepareStmt(c driver.ConnPrepareContext, q string) (driver.Stmt, error) {
	stmt, err := c.PrepareContext(context.Background(), q)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", q, err)
	}
	st.open = append(st.open, stmt)
	return stmt, nil
}

func (st *stmts) prepareOne(c driver.ConnPrepareContext, q string) (driver.StmtExecContext, error) {
	stmt, err := st.prepareStmt(c, q)
	if err != nil {
		return nil, err
	}
	e, ok := stmt.(driver.StmtExecContext)
	if !ok {
		return nil, fmt.Errorf("sqlite driver statement %T cannot execute with a context", stmt)
	}
	return e, nil
}

func (st *stmts) inserts() []*inserts {
	return []*inserts{&st.putSub, &st.putSubState, &st.putBind}
}

// inserts writes new rows of one table, INSERT OR REPLACE, up to
// 1<<insertsMax rows a statement: a row a statement, SQLite's work per
// execution (a VDBE started, a cursor opened on the table, the statement
// reset) was paid per row (RATIONALE.md). One statement is prepared per
// power of two, so a run of any length takes one statement per bit of it,
// each row written once.
type inserts struct {
	table string
	verb  string                                 // INSERT OR REPLACE unless set
	tail  string                                 // after the VALUES: an upsert's clause
	width int                                    // columns
	by    [insertsMax + 1]driver.StmtExecContext // by[k] writes 1<<k rows
	rows  []driver.Value                         // queued, width a row, in order
}

const insertsMax = 5

func (in *inserts) add(row ...driver.Value) { in.rows = append(in.rows, row...) }

// flush writes the rows queued, in order: VALUES are inserted in their
// order, so of two rows with one key the later stays.
func (in *inserts) flush(st *stmts) error {
	defer in.drop()
	for rows := in.rows; len(rows) > 0; {
		k := min(bits.Len(uint(len(rows)/in.width))-1, insertsMax)
		n := in.width << k
		if err := st.exec(in.by[k], rows[:n]...); err != nil {
			return fmt.Errorf("%s: %w", in.table, err)
		}
		rows = rows[n:]
	}
	return nil
}

// drop forgets the rows queued (and the batch memory they hold).
func (in *inserts) drop() {
	clear(in.rows)
	in.rows = in.rows[:0]
}

func (st *stmts) close() error {
	var errs []error
	for _, s := range st.open {
		errs = append(errs, s.Close())
	}
	st.open = nil
	return errors.Join(errs...)
}

// exec runs s with args, each an int64, string, []byte or nil: the
// values the driver binds as they are.
func (st *stmts) exec(s driver.StmtExecContext, args ...driver.Value) error {
	_, err := st.execCount(s, args...)
	return err
}

// execCount is exec, with the count of rows the statement changed.
func (st *stmts) execCount(s driver.StmtExecContext, args ...driver.Value) (int64, error) {
	for i, a := range args {
		st.args = append(st.args, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	res, err := s.ExecContext(context.Background(), st.args)
	clear(st.args) // holds no batch's memory until the next
	st.args = st.args[:0]
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// readPubs reads the publications column and the state's length of the
// resource row id, in the writer's transaction; found is false without
// such a row.
func (st *stmts) readPubs(id int64) (pubs string, stateLen int, found bool, err error) {
	st.args = append(st.args[:0], driver.NamedValue{Ordinal: 1, Value: id})
	rows, err := st.getPubs.QueryContext(context.Background(), st.args)
	st.args = st.args[:0]
	if err != nil {
		return "", 0, false, err
	}
	defer rows.Close()
	dest := make([]driver.Value, 2)
	switch err := rows.Next(dest); {
	case errors.Is(err, io.EOF):
		return "", 0, false, nil
	case err != nil:
		return "", 0, false, err
	}
	switch v := dest[0].(type) {
	case string:
		pubs = v
	case []byte:
		pubs = string(v)
	}
	n, _ := dest[1].(int64)
	return pubs, int(n), true, nil
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

// Commit implements Store: it returns nil once b is on disk, and an error
// only if b was not and will not be written.
func (s *SQLite) Commit(ctx context.Context, b *Batch) error { return s.q.Commit(ctx, b) }

// write is the writer's transaction. Begin waits for the write lock
// (busy_timeout) before any batch is taken: a caller whose deadline
// passes meanwhile abandons its batch and is answered at once, and a
// taken batch is one transaction from its outcome.
func (s *SQLite) write(take func() []*Batch) error {
	return s.conn.Raw(func(dc any) error {
		// The DSN's _txlock makes this BEGIN IMMEDIATE.
		tx, err := dc.(driver.ConnBeginTx).BeginTx(context.Background(), driver.TxOptions{})
		if err != nil {
			return fmt.Errorf("begin store transaction: %w", err)
		}
		group := take()
		if len(group) == 0 {
			return tx.Rollback()
		}
		if err := s.stmts.apply(group); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			// A COMMIT that failed may leave the transaction open, to be
			// committed with the next group: its callers are told it
			// was not written, so it must never be.
			tx.Rollback()
			return fmt.Errorf("commit store transaction: %w", err)
		}
		return nil
	})
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func lines(v []string) string { return strings.Join(v, "\n") }

func unlines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// apply writes a group of batches. Each statement touches one table, so
// the group is written a table at a time, each table's changes in the
// group's order: the rows end as batch after batch would leave them, and
// the new rows of a table, which the batches of a group have in a run
// (a PUBLISH's resource state, a SUBSCRIBE's per-watcher state), are
// written many a statement (inserts).
func (st *stmts) apply(group []*Batch) error {
	// A statement that failed leaves rows queued; the transaction is
	// rolled back and they must not be written with the next.
	defer func() {
		for _, in := range st.inserts() {
			in.drop()
		}
	}()
	exec := st.exec
	for _, b := range group {
		for _, v := range b.Subscriptions {
			st.putSub.add(v.ID, v.CallID, v.LocalTag, v.RemoteTag, v.LocalURI, v.RemoteURI, v.RemoteTarget, lines(v.RouteSet),
				v.Transport, v.Source, v.Event, v.EventID, v.Resource, lines(v.Accept), ms(v.Expires),
				int64(v.LocalCSeq), int64(v.RemoteCSeq), ms(v.Created))
		}
		if len(b.DeleteSubscriptions) == 0 && len(b.NotifyCSeqs) == 0 {
			continue
		}
		if err := st.putSub.flush(st); err != nil {
			return fmt.Errorf("subscription: %w", err)
		}
		for _, id := range b.DeleteSubscriptions {
			if err := exec(st.delSub, id); err != nil {
				return err
			}
		}
		for _, c := range b.NotifyCSeqs {
			if err := exec(st.cseq, int64(c.CSeq), c.ID, int64(c.CSeq)); err != nil {
				return err
			}
		}
	}
	if err := st.putSub.flush(st); err != nil {
		return fmt.Errorf("subscription: %w", err)
	}

	for _, b := range group {
		for _, v := range b.Subscriptions {
			st.putSubState.add(v.ID, v.State, v.Status)
		}
		if len(b.SubscriptionStates) == 0 && len(b.DeleteSubscriptions) == 0 {
			continue
		}
		if err := st.putSubState.flush(st); err != nil {
			return fmt.Errorf("subscription: %w", err)
		}
		if err := st.states(b.SubscriptionStates); err != nil {
			return fmt.Errorf("subscription state: %w", err)
		}
		for _, id := range b.DeleteSubscriptions {
			if err := exec(st.delSubState, id); err != nil {
				return err
			}
		}
	}
	if err := st.putSubState.flush(st); err != nil {
		return fmt.Errorf("subscription: %w", err)
	}

	// A resource row holds its state and its publications: each batch's
	// are written in the group's order, a row read first when its
	// publications change otherwise than by one new one (applyResources).
	for _, b := range group {
		if err := st.applyResources(b); err != nil {
			return err
		}
	}

	for _, b := range group {
		for _, v := range b.Bindings {
			st.putBind.add(v.ID, v.AOR, v.Contact, v.Q, v.CallID, int64(v.CSeq), ms(v.Expires), v.Instance, int64(v.RegID), lines(v.Path))
		}
		if len(b.DeleteBindings) == 0 {
			continue
		}
		if err := st.putBind.flush(st); err != nil {
			return fmt.Errorf("binding: %w", err)
		}
		for _, id := range b.DeleteBindings {
			if err := exec(st.delBind, id); err != nil {
				return err
			}
		}
	}
	if err := st.putBind.flush(st); err != nil {
		return fmt.Errorf("binding: %w", err)
	}
	return nil
}

// states writes per-watcher states: runs of the same state and status
// subStatesRun rows a statement, in order, so a row named twice ends as
// the last says.
func (st *stmts) states(v []SubscriptionState) error {
	for len(v) > 0 {
		n := 1
		for n < len(v) && n < subStatesRun && v[n].Status == v[0].Status && bytes.Equal(v[n].State, v[0].State) {
			n++
		}
		var err error
		if n == 1 {
			err = st.exec(st.subState, v[0].State, v[0].Status, v[0].ID)
		} else {
			args := make([]driver.Value, 2, 2+subStatesRun)
			args[0], args[1] = v[0].State, v[0].Status
			for i := range subStatesRun {
				args = append(args, v[min(i, n-1)].ID) // the last again: IN takes it once
			}
			err = st.exec(st.subStates, args...)
		}
		if err != nil {
			return err
		}
		v = v[n:]
	}
	return nil
}

// row is what a batch writes of one resource row: its state, its
// publications, or both.
type row struct {
	id              uint64
	event, resource string
	state           []byte
	setState        bool
	pubs            []func([]Publication) []Publication // in the batch's order
	added           []Publication                       // the batch's Publications of the row
}

// applyResources writes b's resource states and publications, one row
// each resource: a row whose publications change is read first, and
// written once with its state, if that changes too. A row left with
// neither state nor publications is deleted.
func (st *stmts) applyResources(b *Batch) error {
	var order []*row
	rows := map[uint64]*row{}
	rowOf := func(id uint64, event, resource string) (*row, error) {
		if id == 0 {
			return nil, fmt.Errorf("resource %s: %w", resource, ErrNoID)
		}
		r := rows[id]
		if r == nil {
			r = &row{id: id, event: event, resource: resource}
			rows[id] = r
			order = append(order, r)
		}
		if r.event == "" {
			r.event, r.resource = event, resource
		}
		return r, nil
	}
	for _, v := range b.Publications {
		r, err := rowOf(v.ResourceID, v.Event, v.Resource)
		if err != nil {
			return fmt.Errorf("publication: %w", err)
		}
		r.added = append(r.added, v)
		r.pubs = append(r.pubs, func(ps []Publication) []Publication {
			if i := slices.IndexFunc(ps, func(p Publication) bool { return p.ID == v.ID }); i >= 0 {
				ps[i] = v
				return ps
			}
			return append(ps, v)
		})
	}
	for _, v := range b.PublicationRefreshes {
		r, err := rowOf(v.ResourceID, "", "")
		if err != nil {
			return fmt.Errorf("publication refresh: %w", err)
		}
		r.pubs = append(r.pubs, func(ps []Publication) []Publication {
			if i := slices.IndexFunc(ps, func(p Publication) bool { return p.ID == v.ID }); i >= 0 {
				ps[i].ETag, ps[i].Expires = v.ETag, v.Expires
			}
			return ps
		})
	}
	// By ID alone: one daemon writes a SQLite store, so the ETag it
	// names is always the one stored (Batch.DeletePublications).
	for _, v := range b.DeletePublications {
		r, err := rowOf(v.ResourceID, "", "")
		if err != nil {
			return fmt.Errorf("publication removal: %w", err)
		}
		r.pubs = append(r.pubs, func(ps []Publication) []Publication {
			return slices.DeleteFunc(ps, func(p Publication) bool { return p.ID == v.ID })
		})
	}
	for _, v := range b.Resources {
		r, err := rowOf(v.ID, v.Event, v.Resource)
		if err != nil {
			return fmt.Errorf("resource: %w", err)
		}
		r.state, r.setState = v.State, true
	}
	for _, r := range order {
		if err := st.writeRow(r); err != nil {
			return fmt.Errorf("resource %s: %w", r.resource, err)
		}
	}
	return nil
}

// writeRow writes r: a new state alone in one statement; anything else
// reads the row's publications first.
func (st *stmts) writeRow(r *row) error {
	id := int64(r.id)
	if r.pubs == nil && len(r.state) > 0 {
		return st.exec(st.putState, id, r.event, r.resource, r.state)
	}
	if len(r.pubs) == 1 && len(r.added) == 1 && (!r.setState || len(r.state) > 0) {
		if done, err := st.addNew(r); done || err != nil {
			return err
		}
	}
	stored, stateLen, found, err := st.readPubs(id)
	if err != nil {
		return err
	}
	ps, err := decodePubs(stored, r.event, r.resource, r.id)
	if err != nil {
		return err
	}
	for _, op := range r.pubs {
		ps = op(ps)
	}
	text, err := encodePubs(ps)
	switch {
	case err != nil:
		return err
	case r.setState && len(r.state) == 0 && len(ps) == 0, !r.setState && stateLen == 0 && len(ps) == 0:
		if !found {
			return nil
		}
		return st.exec(st.delRes, id)
	case !found && r.event == "":
		return nil // a refresh or removal of a publication not stored
	case r.setState || !found:
		return st.exec(st.putRow, id, r.event, r.resource, orEmpty(r.state), text)
	}
	return st.exec(st.putPubs, text, id)
}

// addNew writes r, whose one change of publications is r.added[0], in
// one statement if that publication is not in the row yet: what a new
// publication writes. It reports whether it did.
func (st *stmts) addNew(r *row) (bool, error) {
	line, err := encodePubs(r.added)
	if err != nil {
		return false, err
	}
	var state driver.Value // NULL: the state stored is kept
	if r.setState {
		state = r.state
	}
	n, err := st.execCount(st.addPub, int64(r.id), r.event, r.resource, state, line, r.added[0].ID)
	return n == 1, err
}

// orEmpty is b, or an empty BLOB for nil: the column is NOT NULL.
func orEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// encodePubs is the pubs column of a resource row: one publication a
// line, its id, ETag, size, expiry (unix milliseconds) and content type
// apart by tabs (the type last, whose parameters might hold one). Text,
// so that an operator's sqlite3 reads it and migration 7 wrote it in
// SQL.
func encodePubs(ps []Publication) (string, error) {
	var b strings.Builder
	for i, p := range ps {
		if strings.ContainsAny(p.ID, "\t\n") || strings.ContainsAny(p.ETag, "\t\n") || strings.Contains(p.ContentType, "\n") {
			return "", fmt.Errorf("publication %q: a tab or a line break in its id, ETag or content type", p.ID)
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s\t%s\t%d\t%d\t%s", p.ID, p.ETag, p.Size, ms(p.Expires), p.ContentType)
	}
	return b.String(), nil
}

// decodePubs reads a pubs column (encodePubs) of the resource row id.
func decodePubs(text, event, resource string, id uint64) ([]Publication, error) {
	if text == "" {
		return nil, nil
	}
	var ps []Publication
	for line := range strings.SplitSeq(text, "\n") {
		f := strings.SplitN(line, "\t", 5)
		if len(f) != 5 {
			return nil, fmt.Errorf("publication %q of %s: %d fields, not 5", line, resource, len(f))
		}
		size, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("publication %s of %s: size: %w", f[0], resource, err)
		}
		exp, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("publication %s of %s: expiry: %w", f[0], resource, err)
		}
		ps = append(ps, Publication{ID: f[0], ETag: f[1], Event: event, Resource: resource, ContentType: f[4],
			Size: size, Expires: time.UnixMilli(exp), ResourceID: id})
	}
	return ps, nil
}

// Load implements Store. Its queries share one read transaction: a commit
// landing between two of them would give a snapshot mixing batches.
func (s *SQLite) Load(ctx context.Context) (*Snapshot, error) {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("load store: %w", err)
	}
	defer tx.Rollback()
	snap, err := load(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("load store: %w", err)
	}
	return snap, nil
}

// selectSubscriptions reads whole subscriptions, as scanSubscriptions
// takes them. LEFT JOIN: a subscription is never written without its
// state row, but were one missing, the dialog would still come back (as
// active, with no per-watcher state) rather than vanish.
const selectSubscriptions = `SELECT id, call_id, local_tag, remote_tag, local_uri, remote_uri, remote_target,
	route_set, transport, source, event, event_id, resource, accept, expires, local_cseq, remote_cseq,
	state, coalesce(status, ''), created
	FROM subscriptions LEFT JOIN subscription_states USING (id)`

// scanSubscriptions appends to subs the subscriptions rows holds
// (selectSubscriptions) and closes rows.
func scanSubscriptions(rows *sql.Rows, subs []Subscription) ([]Subscription, error) {
	defer rows.Close()
	for rows.Next() {
		var v Subscription
		var routes, accept string
		var exp, created int64
		if err := rows.Scan(&v.ID, &v.CallID, &v.LocalTag, &v.RemoteTag, &v.LocalURI, &v.RemoteURI, &v.RemoteTarget,
			&routes, &v.Transport, &v.Source, &v.Event, &v.EventID, &v.Resource, &accept, &exp, &v.LocalCSeq,
			&v.RemoteCSeq, &v.State, &v.Status, &created); err != nil {
			return nil, err
		}
		v.RouteSet, v.Accept = unlines(routes), unlines(accept)
		v.Expires, v.Created = time.UnixMilli(exp), time.UnixMilli(created)
		subs = append(subs, v)
	}
	return subs, rows.Err()
}

func load(ctx context.Context, tx *sql.Tx) (*Snapshot, error) {
	snap := &Snapshot{}
	// LEFT JOIN: a subscription is never written without its state
	// row, but were one missing, the dialog would still come back (as
	// active, with no per-watcher state) rather than vanish.
	rows, err := tx.QueryContext(ctx, selectSubscriptions)
	if err != nil {
		return nil, err
	}
	if snap.Subscriptions, err = scanSubscriptions(rows, nil); err != nil {
		return nil, err
	}

	// A row with publications and no state gives no Resource: a state
	// is never empty.
	rows, err = tx.QueryContext(ctx, `SELECT id, event, resource, state, pubs FROM resources`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var v Resource
		var id int64
		var pubs string
		if err := rows.Scan(&id, &v.Event, &v.Resource, &v.State, &pubs); err != nil {
			rows.Close()
			return nil, err
		}
		v.ID = uint64(id)
		ps, err := decodePubs(pubs, v.Event, v.Resource, v.ID)
		if err != nil {
			rows.Close()
			return nil, err
		}
		snap.Publications = append(snap.Publications, ps...)
		if len(v.State) > 0 {
			snap.Resources = append(snap.Resources, v)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	rows, err = tx.QueryContext(ctx, `SELECT id, aor, contact, q, call_id, cseq, expires, instance, reg_id, path FROM bindings`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v Binding
		var exp int64
		var path string
		if err := rows.Scan(&v.ID, &v.AOR, &v.Contact, &v.Q, &v.CallID, &v.CSeq, &exp, &v.Instance, &v.RegID, &path); err != nil {
			return nil, err
		}
		v.Expires, v.Path = time.UnixMilli(exp), unlines(path)
		snap.Bindings = append(snap.Bindings, v)
	}
	return snap, rows.Err()
}

// Close waits for the transaction being written, refuses what is still
// queued, and closes the file.
func (s *SQLite) Close() error {
	s.q.Close()
	// Statements left open would keep SQLite from closing the file
	// (and checkpointing the WAL into it) when the last connection goes.
	err := s.conn.Raw(func(any) error { return s.stmts.close() })
	return errors.Join(err, s.conn.Close(), s.db.Close(), s.read.Close())
}

// LoadResource implements Store: the row of id, if it is event's
// resource. SQLite keeps no versions (it is never shared: Resource), so
// the version is always 0.
func (s *SQLite) LoadResource(ctx context.Context, id uint64, event, resource string) (Resource, error) {
	r := Resource{Event: event, Resource: resource}
	err := s.readRes.QueryRowContext(ctx, int64(id), event, resource).Scan(&r.State)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return r, nil
	case err != nil:
		return r, fmt.Errorf("load resource %s: %w", resource, err)
	}
	if len(r.State) == 0 { // a row of publications alone
		return Resource{Event: event, Resource: resource}, nil
	}
	r.ID = id
	return r, nil
}

// LoadPublications implements Store: those of the row of id, if it is
// event's resource.
func (s *SQLite) LoadPublications(ctx context.Context, id uint64, event, resource string) ([]Publication, error) {
	var pubs string
	err := s.readPub.QueryRowContext(ctx, int64(id), event, resource).Scan(&pubs)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err == nil {
		var ps []Publication
		if ps, err = decodePubs(pubs, event, resource, id); err == nil {
			return ps, nil
		}
	}
	return nil, fmt.Errorf("load publications of %s: %w", resource, err)
}

// subscriptionsPerQuery bounds the ids of one query of LoadSubscriptions
// (SQLite takes up to 32,766 parameters; a statement of this many is
// prepared in tens of microseconds, a presentity's watchers in one).
const subscriptionsPerQuery = 500

// LoadSubscriptions implements Store: each id is a point query of the
// key, several to a statement. Nothing indexes subscriptions by their
// presentity (schema 2 dropped it: an index on a random key cost every
// SUBSCRIBE's commit a page of its own), so the server names the ones it
// wants.
func (s *SQLite) LoadSubscriptions(ctx context.Context, ids []string) ([]Subscription, error) {
	var subs []Subscription
	for len(ids) > 0 {
		n := min(len(ids), subscriptionsPerQuery)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		q := selectSubscriptions + ` WHERE id IN (?` + strings.Repeat(`, ?`, n-1) + `)`
		rows, err := s.read.QueryContext(ctx, q, args...)
		if err == nil {
			subs, err = scanSubscriptions(rows, subs)
		}
		if err != nil {
			return nil, fmt.Errorf("load subscriptions: %w", err)
		}
		ids = ids[n:]
	}
	return subs, nil
}
