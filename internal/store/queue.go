package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// CommitQueue is group commit with the guarantee Store.Commit makes, for
// a backend with one writer: batches queued while a transaction is being
// written share the next one, and a batch is either taken by the writer,
// whose outcome its caller then waits for, or abandoned by a caller whose
// context ended first, and then never written. SQLite and PostgreSQL
// both commit through one.
type CommitQueue struct {
	queue   chan *pendingCommit
	done    chan struct{}
	stopped chan struct{}
	close   sync.Once
}

// A pendingCommit is queued until the writer takes it or its caller
// abandons it; whichever comes first wins the state, so a Commit that
// returns an error was never written and never will be.
type pendingCommit struct {
	b     *Batch
	state atomic.Int32
	err   chan error // the writer's outcome, once taken
}

const (
	queued int32 = iota
	taken
	abandoned
)

// maxGroup bounds how many batches share one transaction, so one slow
// group cannot grow without limit.
const maxGroup = 512

// ErrClosed is the error of a Commit on a store being closed: its batch
// was not written.
var ErrClosed = errors.New("store closed")

// NewCommitQueue returns a queue whose writer is Serve.
func NewCommitQueue() *CommitQueue {
	return &CommitQueue{queue: make(chan *pendingCommit, 4096), done: make(chan struct{}), stopped: make(chan struct{})}
}

// Commit queues b for the writer and returns its outcome: nil once it is
// written, an error if it was not and will not be. An empty batch is
// written at once.
func (q *CommitQueue) Commit(ctx context.Context, b *Batch) error {
	if b.Empty() {
		return nil
	}
	p := &pendingCommit{b: b, err: make(chan error, 1)}
	select {
	case q.queue <- p:
	case <-q.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("commit not written: %w (%w)", ErrUnavailable, ctx.Err())
	}
	var why error
	select {
	case err := <-p.err:
		return err
	case <-q.done:
		why = ErrClosed
	case <-ctx.Done():
		// The writer did not take it in time: the store is down or slow.
		why = fmt.Errorf("commit not written: %w (%w)", ErrUnavailable, ctx.Err())
	}
	if p.state.CompareAndSwap(queued, abandoned) {
		return why
	}
	// The writer took it: its outcome is one transaction away, and the
	// caller must not answer before it.
	return <-p.err
}

// Conflicts is what a writer returns when it wrote its group but for
// some batches, left out for a version conflict (ErrConflict) or a
// dialog another node owns (ErrFenced): their indexes in what take
// returned, and why. Those fail, the rest succeed.
type Conflicts map[int]error

func (c Conflicts) Error() string { return fmt.Sprintf("%d batches of the group conflicted", len(c)) }

// Serve is the writer: until Close, for each group it calls write, which
// gets ready to write (takes a lock, a connection), then calls take for
// the batches queued so far, in order, and writes them as one
// transaction. write's error is the outcome of every batch it took (but
// Conflicts, which names the batches that failed); if it returns before
// calling take, the batches queued get its error.
func (q *CommitQueue) Serve(write func(take func() []*Batch) error) {
	defer close(q.stopped)
	for {
		var first *pendingCommit
		select {
		case first = <-q.queue:
		case <-q.done:
			// What is still queued is abandoned by its callers.
			return
		}
		var group []*pendingCommit
		var took bool
		take := func() []*Batch {
			took = true
			batches := make([]*Batch, 0, 16)
			if first.state.CompareAndSwap(queued, taken) {
				group, batches = append(group, first), append(batches, first.b)
			}
		more:
			for len(group) < maxGroup {
				select {
				case p := <-q.queue:
					if p.state.CompareAndSwap(queued, taken) {
						group, batches = append(group, p), append(batches, p.b)
					}
				default:
					break more
				}
			}
			return batches
		}
		err := write(take)
		if !took {
			if err == nil {
				err = errors.New("store writer wrote nothing")
			}
			take()
		}
		conflicts, partial := err.(Conflicts)
		for i, p := range group {
			switch {
			case !partial:
				p.err <- err
			case conflicts[i] != nil:
				p.err <- fmt.Errorf("commit not written: %w", conflicts[i])
			default:
				p.err <- nil
			}
		}
	}
}

// Done is closed when Close is called: a writer waiting to get ready may
// give up then.
func (q *CommitQueue) Done() <-chan struct{} { return q.done }

// Close refuses new and queued commits and waits for Serve to finish the
// group it is writing. Serve must have been started.
func (q *CommitQueue) Close() {
	q.close.Do(func() { close(q.done) })
	<-q.stopped
}
