package store

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// SQLite opens an empty file as a new database and ignores a write-ahead
// log whose header it cannot read; either way the store would start with
// no state, or without its last commits, and say nothing. These checks,
// before SQLite touches the files, refuse to start instead, and tell the
// operator what was found and what to do.

// checkFiles refuses a store file that exists but is empty, and a -wal
// that is not a SQLite write-ahead log or has no database beside it. A
// missing store file with no -wal is a new store.
func checkFiles(path string) error {
	wal := path + "-wal"
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if wi, err := os.Stat(wal); err == nil && wi.Size() > 0 {
			return fmt.Errorf("store %s is missing but its write-ahead log %s is there, with commits that belong to the missing file; "+
				"restore both from a backup, or remove %s (and %s-shm) to start with an empty store", path, wal, wal, path)
		}
		return nil
	case err != nil:
		return fmt.Errorf("store %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("store %s is not a regular file; restore it from a backup, or remove it to start with an empty store", path)
	case fi.Size() == 0:
		return fmt.Errorf("store %s is empty (0 bytes), which presenced never leaves it: it was truncated or replaced, "+
			"and would open as a store with no state; restore it from a backup, or remove it to start with an empty store", path)
	}
	f, err := os.Open(wal)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	defer f.Close()
	var h [walHeaderSize]byte
	n, err := io.ReadFull(f, h[:])
	if n == 0 && err == io.EOF {
		return nil // SQLite leaves an empty log after a checkpoint
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("store %s: read %s: %w", path, wal, err)
	}
	if why := walHeaderDamage(h[:n]); why != "" {
		return fmt.Errorf("store %s: its write-ahead log %s %s, so SQLite would drop the commits in it without a word; "+
			"restore both files from a backup, or remove %[2]s and %[1]s-shm to start from the main file without those commits",
			path, wal, why)
	}
	return nil
}

const walHeaderSize = 32

// walHeaderDamage says what is wrong with a write-ahead log's header, or
// "" if it is one SQLite wrote (https://sqlite.org/fileformat2.html#walformat).
func walHeaderDamage(h []byte) string {
	if len(h) < walHeaderSize {
		return fmt.Sprintf("is %d bytes, shorter than a header", len(h))
	}
	magic := binary.BigEndian.Uint32(h)
	if magic != 0x377f0682 && magic != 0x377f0683 {
		return fmt.Sprintf("is not a SQLite write-ahead log (it starts %#08x)", magic)
	}
	// The checksum of the first 24 bytes, in 32-bit words of the byte
	// order the magic's low bit names.
	var order binary.ByteOrder = binary.LittleEndian
	if magic&1 == 1 {
		order = binary.BigEndian
	}
	var s0, s1 uint32
	for i := 0; i < 24; i += 8 {
		s0 += order.Uint32(h[i:]) + s1
		s1 += order.Uint32(h[i+4:]) + s0
	}
	if s0 != binary.BigEndian.Uint32(h[24:]) || s1 != binary.BigEndian.Uint32(h[28:]) {
		return "has a header that fails its checksum"
	}
	return ""
}

// integrityCheck runs SQLite's integrity_check: every page read and every
// b-tree's structure checked. quick_check skips only the comparison of
// indexes with their tables, which this schema does not have: the two
// cost the same here (RATIONALE.md).
func integrityCheck(db *sql.DB, path string) error {
	const fix = "restore it from a backup, or remove it (and its -wal and -shm) to start with an empty store"
	rows, err := db.Query("PRAGMA integrity_check(5)")
	if err != nil {
		return fmt.Errorf("store %s cannot be read as a SQLite database (integrity_check: %w); "+fix, path, err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("store %s: integrity_check: %w", path, err)
		}
		found = append(found, s)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store %s is damaged (integrity_check: %w); "+fix, path, err)
	}
	if len(found) == 1 && found[0] == "ok" {
		return nil
	}
	return fmt.Errorf("store %s is damaged (integrity_check: %s); "+fix, path, strings.Join(found, "; "))
}
