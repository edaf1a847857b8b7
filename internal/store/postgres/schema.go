package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaVersion is the version this build writes; migrations[i] takes a
// database from version i to i+1. It counts on its own, apart from the
// SQLite file's: version 1 here holds what SQLite's version 4 holds.
const schemaVersion = 4

// migrations keep the records of internal/store as SQLite does, in
// PostgreSQL's own types: times as timestamptz and lists as text[], so
// that psql shows them as they are. As in SQLite, no index but the
// primary keys (and one on publications, migration 4): rows are written
// and deleted by key and read only by the full load at start and, once
// per lease, the scan for the publications of nodes gone
// (Store.Expired): internal/store/RATIONALE.md, "The cost is pages".
// Keys are COLLATE "C": byte order, the cheapest comparison, whatever the
// database's locale.
var migrations = []string{
	`CREATE TABLE subscriptions (
		id text COLLATE "C" PRIMARY KEY,
		call_id text NOT NULL, local_tag text NOT NULL, remote_tag text NOT NULL,
		local_uri text NOT NULL, remote_uri text NOT NULL, remote_target text NOT NULL,
		route_set text[] NOT NULL,
		transport text NOT NULL, source text NOT NULL,
		event text NOT NULL, event_id text NOT NULL, resource text NOT NULL,
		accept text[] NOT NULL,
		expires timestamptz NOT NULL,
		local_cseq bigint NOT NULL, remote_cseq bigint NOT NULL,
		state bytea, status text NOT NULL, created timestamptz NOT NULL
	);
	CREATE TABLE publications (
		id text COLLATE "C" PRIMARY KEY, etag text NOT NULL,
		event text NOT NULL, resource text NOT NULL,
		content_type text NOT NULL, size bigint NOT NULL,
		expires timestamptz NOT NULL
	);
	CREATE TABLE resources (
		event text COLLATE "C" NOT NULL, resource text COLLATE "C" NOT NULL, state bytea NOT NULL,
		PRIMARY KEY (event, resource)
	);
	CREATE TABLE bindings (
		id text COLLATE "C" PRIMARY KEY, aor text NOT NULL, contact text NOT NULL, q text NOT NULL,
		call_id text NOT NULL, cseq bigint NOT NULL, expires timestamptz NOT NULL,
		instance text NOT NULL, reg_id bigint NOT NULL, path text[] NOT NULL
	);`,
	// 2: a resource's state carries its version, which every write checks
	// (store.Resource.Prev), so that two nodes writing one resource at
	// once cannot both land. A state stored before had one write: any
	// nonzero version names it. The default goes once the rows have it:
	// every write names its version.
	`ALTER TABLE resources ADD COLUMN version bigint NOT NULL DEFAULT 1;
	ALTER TABLE resources ALTER COLUMN version DROP DEFAULT;`,
	// 3: each dialog belongs to one node's epoch, which holds a lease
	// (lease.go). A subscription stored before has none (0): the first
	// node to look takes it.
	`CREATE SEQUENCE epochs;
	CREATE TABLE nodes (epoch bigint PRIMARY KEY, lease_until timestamptz NOT NULL, name text NOT NULL);
	ALTER TABLE subscriptions ADD COLUMN owner bigint NOT NULL DEFAULT 0;`,
	// 4: a publication is looked up by its presentity and ETag when a
	// node that does not hold it is asked to refresh it
	// (Store.Publication). On resource, which a publication keeps for
	// life, so a refresh (a new ETag and expiry) writes no index entry.
	`CREATE INDEX publications_resource ON publications (resource);`,
}

// migrationLock is the advisory lock migrations hold ("pres"): nodes
// starting together migrate one after the other, and the later ones find
// the work done.
const migrationLock = 0x70726573

// migrate brings the database's schema to schemaVersion, all in one
// transaction (PostgreSQL's DDL is transactional): a failure leaves the
// schema as it was. A database written by a newer presenced is refused.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)`); err != nil {
			return err
		}
		v := 0
		err := tx.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v)
		switch {
		case err == pgx.ErrNoRows:
			if _, err := tx.Exec(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
				return err
			}
		case err != nil:
			return err
		case v > schemaVersion:
			return fmt.Errorf("schema version %d was written by a newer presenced (this one knows up to %d); refusing to touch it", v, schemaVersion)
		}
		for ; v < schemaVersion; v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migration to version %d: %w", v+1, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE schema_version SET version = $1`, schemaVersion)
		return err
	})
}
