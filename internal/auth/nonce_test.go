package auth

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestNonceCheck(t *testing.T) {
	n := nonces{secret: []byte("k")}
	at := time.Date(2026, 3, 1, 12, 0, 0, 7, time.UTC)
	nonce := n.make("r", at)
	if issued, err := n.check(nonce, "r"); err != nil || !issued.Equal(at) {
		t.Errorf("check = %v, %v; want %v", issued, err, at)
	}
	for _, bad := range []string{"", "short", nonce + "A", nonce[:len(nonce)-1] + "!", nonce[1:] + "A"} {
		if _, err := n.check(bad, "r"); !errors.Is(err, errForeignNonce) {
			t.Errorf("check(%q) = %v, want errForeignNonce", bad, err)
		}
	}
	if _, err := n.check(nonce, "R"); !errors.Is(err, errForeignNonce) {
		t.Errorf("nonce of realm r accepted for R: %v", err)
	}
	if _, err := (nonces{secret: []byte("other")}).check(nonce, "r"); !errors.Is(err, errForeignNonce) {
		t.Errorf("nonce accepted under another secret: %v", err)
	}
}

func TestReplayGuardBounded(t *testing.T) {
	const max = 10
	g := newReplayGuard(max, time.Minute)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 100 {
		issued := t0.Add(time.Duration(i) * time.Millisecond)
		if err := g.use(fmt.Sprint(i), issued, 1, issued); err != nil {
			t.Fatalf("nonce %d: %v", i, err)
		}
		if len(g.seen) > max || len(g.order) != len(g.seen) {
			t.Fatalf("after %d nonces: %d entries, %d in order; cap %d", i+1, len(g.seen), len(g.order), max)
		}
	}
	// An evicted nonce is refused as stale, never accepted again.
	now := t0.Add(time.Second)
	if err := g.use("0", t0, 2, now); !errors.Is(err, ErrStale) {
		t.Errorf("evicted nonce: %v, want ErrStale", err)
	}
	if err := g.use("99", t0.Add(99*time.Millisecond), 1, now); !errors.Is(err, ErrReplay) {
		t.Errorf("kept nonce, same nc: %v, want ErrReplay", err)
	}
	if err := g.use("new", now, 1, now); err != nil {
		t.Errorf("nonce issued after the evictions: %v", err)
	}
	// Expired nonces go when the TTL has passed.
	later := now.Add(2 * time.Minute)
	if err := g.use("late", later, 1, later); err != nil {
		t.Fatal(err)
	}
	if len(g.seen) != 1 || len(g.order) != 1 {
		t.Errorf("after expiry: %d entries, %d in order; want 1", len(g.seen), len(g.order))
	}
}
