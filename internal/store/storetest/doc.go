// Package storetest is what tests of the store share: Run, the suite every
// store.Store backend must pass, Faulty, a store that fails on demand
// for the tests of the server's answers to a failing store, and
// HoldWriteLock, a SQLite file's write lock held as another process
// would. It is for tests only; nothing in the daemon imports it.
package storetest
