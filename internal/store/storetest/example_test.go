package storetest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/storetest"
)

// A server test gives the server a Faulty store, makes it fail before the
// request under test, and checks that nothing was acknowledged; then it
// restarts a server on the wrapped store to see what survived.
func ExampleFaulty() {
	mem := store.NewMemory()
	f := storetest.NewFaulty(mem)
	f.Fail(errors.New("disk full"))
	err := f.Commit(context.Background(), &store.Batch{DeleteSubscriptions: []string{"d1"}})
	fmt.Println(err, f.Refused(), f.Commits())
	f.Heal()
	err = f.Commit(context.Background(), &store.Batch{DeleteSubscriptions: []string{"d1"}})
	fmt.Println(err, f.Refused(), f.Commits())
	// Output:
	// disk full 1 0
	// <nil> 1 1
}
