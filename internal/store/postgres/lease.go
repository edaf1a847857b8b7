package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/presenced/presenced/internal/store"
)

// Leases (store.Leases): a node's store joins with a new epoch from a
// sequence, whose row in nodes holds its lease, by the database's clock.
// Every subscription row names the epoch that owns it; the writer checks
// it before writing any (fence), and a node whose lease ran out may have
// its dialogs taken by another (TakeOver).

// Join implements store.Leases.
func (s *Store) Join(ctx context.Context, name string, d time.Duration) ([]store.Subscription, error) {
	var epoch int64
	var kept []store.Subscription
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM nodes WHERE name = $1 RETURNING epoch`, name)
		if err != nil {
			return err
		}
		old, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO nodes SELECT nextval('epochs'), now() + $1, $2 RETURNING epoch`,
			d, name).Scan(&epoch); err != nil {
			return err
		}
		// The dialogs of this name's old epoch, and any stored before
		// owners, are this epoch's: Load returns them, as after a restart
		// on one node.
		rows, err = tx.Query(ctx, `UPDATE subscriptions SET owner = $1 WHERE owner = ANY($2) OR owner = 0
			RETURNING `+subscriptionColumns, epoch, old)
		if err != nil {
			return err
		}
		kept, err = pgx.CollectRows(rows, scanSubscription)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("join store %s: %w", s.where, err)
	}
	s.epoch.Store(epoch)
	return kept, nil
}

// Renew implements store.Leases.
func (s *Store) Renew(ctx context.Context, d time.Duration) error {
	tag, err := s.pool.Exec(ctx, `UPDATE nodes SET lease_until = now() + $2 WHERE epoch = $1 AND lease_until > now()`,
		s.epoch.Load(), d)
	switch {
	case err != nil:
		return fmt.Errorf("renew lease in store %s: %w", s.where, err)
	case tag.RowsAffected() != 1:
		return fmt.Errorf("renew lease of epoch %d: %w", s.epoch.Load(), store.ErrFenced)
	}
	return nil
}

// TakeOver implements store.Leases: the epochs whose lease ran out are
// deleted, and their subscriptions become this one's, in one
// transaction. Two nodes taking over at once: the second deletes no
// epoch. The subscriptions are found by a scan (owner has no index: a
// takeover is rare, and an index would cost every write a page), made
// only when an epoch died.
func (s *Store) TakeOver(ctx context.Context) ([]store.Subscription, error) {
	var taken []store.Subscription
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM nodes WHERE lease_until <= now() RETURNING epoch`)
		if err != nil {
			return err
		}
		dead, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil || len(dead) == 0 {
			return err
		}
		rows, err = tx.Query(ctx, `UPDATE subscriptions SET owner = $1 WHERE owner = ANY($2) RETURNING `+subscriptionColumns,
			s.epoch.Load(), dead)
		if err != nil {
			return err
		}
		taken, err = pgx.CollectRows(rows, scanSubscription)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("take over dialogs in store %s: %w", s.where, err)
	}
	return taken, nil
}

// Expired implements store.Leases. It scans the publications (no index
// on expires: every refresh would write one; a node asks once per lease).
func (s *Store) Expired(ctx context.Context, t time.Time) ([]store.Publication, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+publicationColumns+` FROM publications WHERE expires < $1`, t)
	if err == nil {
		var expired []store.Publication
		if expired, err = pgx.CollectRows(rows, scanPublication); err == nil {
			return expired, nil
		}
	}
	return nil, fmt.Errorf("expired publications in store %s: %w", s.where, err)
}

// Publication implements store.Leases, through the index on resource.
func (s *Store) Publication(ctx context.Context, event, resource, etag string) (store.Publication, bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+publicationColumns+` FROM publications
		WHERE resource = $1 AND event = $2 AND etag = $3`, resource, event, etag)
	if err == nil {
		var p store.Publication
		if p, err = pgx.CollectExactlyOneRow(rows, scanPublication); err == nil {
			return p, true, nil
		}
		if errors.Is(err, pgx.ErrNoRows) {
			return p, false, nil
		}
	}
	return store.Publication{}, false, fmt.Errorf("publication in store %s: %w", s.where, err)
}

// fence queues, before b's statements, a check that no dialog b writes
// (a subscription, its deletion, its CSeq) is another epoch's. FOR
// UPDATE waits for a takeover writing the row, and sees what it left.
func fence(batch *pgx.Batch, b *store.Batch, epoch int64, conflict func(error)) {
	ids := make([]string, 0, len(b.Subscriptions)+len(b.SubscriptionStates)+len(b.DeleteSubscriptions)+len(b.NotifyCSeqs))
	for _, v := range b.Subscriptions {
		ids = append(ids, v.ID)
	}
	for _, v := range b.SubscriptionStates {
		ids = append(ids, v.ID)
	}
	ids = append(ids, b.DeleteSubscriptions...)
	for _, c := range b.NotifyCSeqs {
		ids = append(ids, c.ID)
	}
	if len(ids) == 0 {
		return
	}
	batch.Queue(`SELECT FROM subscriptions WHERE id = ANY($1) AND owner <> $2 FOR UPDATE`, ids, epoch).
		Exec(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() > 0 {
				conflict(store.ErrFenced)
			}
			return nil
		})
}
