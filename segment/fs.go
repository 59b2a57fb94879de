package segment

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// File is an open file. Writes are positional: a segment never depends on
// a file offset, so a failed write can be undone by Truncate.
type File interface {
	io.ReaderAt
	io.WriterAt
	// Truncate sets the file's size.
	Truncate(size int64) error
	// Sync makes the file's data durable (fdatasync).
	Sync() error
	// Size is the file's current size.
	Size() (int64, error)
	Close() error
	Name() string
}

// OSFiler is the zero-copy capability: a File backed by an operating
// system file exposes it for sendfile and mmap. A File without it is read
// through ReadAt.
type OSFiler interface {
	OSFile() *os.File
}

// Preallocator is a File that can reserve disk blocks so later writes into
// a memory map cannot fail with SIGBUS on a full disk.
type Preallocator interface {
	Preallocate(size int64) error
}

// FS is the file system a segment and a partition log use.
type FS interface {
	// OpenFile opens name with os.OpenFile flags.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	RemoveAll(name string) error
	Rename(oldname, newname string) error
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir returns the sorted names in dir and whether each is a dir.
	ReadDir(dir string) ([]DirEntry, error)
	// Stat reports whether name exists, its size and whether it is a dir.
	Stat(name string) (DirEntry, error)
	// SyncDir makes the directory's entries (creates, renames) durable.
	SyncDir(dir string) error
}

// DirEntry is a name in a directory.
type DirEntry struct {
	Name  string
	IsDir bool
	Size  int64
}

// storageErr wraps a failed disk operation as ErrStorage.
func storageErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrStorage) {
		return err
	}
	return fmt.Errorf("%w: %s %s: %w", ErrStorage, op, name, err)
}

// OSFS is the operating system's file system.
type OSFS struct{}

type osFile struct{ *os.File }

func (f osFile) OSFile() *os.File { return f.File }

func (f osFile) Sync() error { return unix.Fdatasync(int(f.Fd())) }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (f osFile) Preallocate(size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return f.File.Truncate(size)
	}
	return err
}

// OpenFile implements FS.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// RemoveAll implements FS.
func (OSFS) RemoveAll(name string) error { return os.RemoveAll(name) }

// Rename implements FS.
func (OSFS) Rename(o, n string) error { return os.Rename(o, n) }

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]DirEntry, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, 0, len(es))
	for _, e := range es {
		out = append(out, DirEntry{Name: e.Name(), IsDir: e.IsDir()})
	}
	return out, nil
}

// Stat implements FS.
func (OSFS) Stat(name string) (DirEntry, error) {
	st, err := os.Stat(name)
	if err != nil {
		return DirEntry{}, err
	}
	return DirEntry{Name: st.Name(), IsDir: st.IsDir(), Size: st.Size()}, nil
}

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// MemFS is an in-memory FS for tests. Every file keeps what was written
// (the page cache) and what was synced; Crash drops everything not synced.
// Faults can be injected into writes and syncs. Directory entries are
// durable as soon as they are made (like a journalled file system after
// the rename or create returns; SyncDir is recorded but not required).
type MemFS struct {
	mu     sync.Mutex
	files  map[string]*memNode
	dirs   map[string]bool
	writes int // successful WriteAt/Truncate calls so far
	// fault injection
	failAfter int // writes left before failing; -1: no fault
	failErr   error
	syncErr   error
	ops       []string
}

type memNode struct {
	data   []byte
	synced []byte
}

// NewMemFS returns an empty MemFS with the root directory.
func NewMemFS() *MemFS {
	return &MemFS{files: map[string]*memNode{}, dirs: map[string]bool{"/": true, ".": true}, failAfter: -1}
}

// FailWritesAfter makes every write after the next n fail with err (e.g.
// syscall.ENOSPC): the failing write stores half its bytes first, as a
// real short write may. ClearFaults ends it.
func (m *MemFS) FailWritesAfter(n int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failAfter, m.failErr = n, err
}

// FailSyncs makes every Sync fail with err until ClearFaults.
func (m *MemFS) FailSyncs(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.syncErr = err
}

// ClearFaults ends all injected faults.
func (m *MemFS) ClearFaults() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failAfter, m.failErr, m.syncErr = -1, nil, nil
}

// Writes is the number of writes that succeeded so far.
func (m *MemFS) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

// Ops returns the recorded create, sync, rename and remove operations.
func (m *MemFS) Ops() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.ops...)
}

// Crash simulates power loss: every file goes back to its last synced
// contents. Open File values must not be used afterwards.
func (m *MemFS) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.files {
		n.data = append([]byte(nil), n.synced...)
	}
}

// Corrupt overwrites bytes of a file at off, synced state included (a test
// helper for damaged media).
func (m *MemFS) Corrupt(name string, off int64, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.files[filepath.Clean(name)]
	if n == nil {
		return
	}
	for i := range b {
		if p := off + int64(i); p < int64(len(n.data)) {
			n.data[p] = b[i]
		}
		if p := off + int64(i); p < int64(len(n.synced)) {
			n.synced[p] = b[i]
		}
	}
}

// fault returns the injected write error, if any, counting the write.
func (m *MemFS) fault() error {
	if m.failAfter < 0 {
		m.writes++
		return nil
	}
	if m.failAfter == 0 {
		return m.failErr
	}
	m.failAfter--
	m.writes++
	return nil
}

type memFile struct {
	fs     *MemFS
	name   string
	node   *memNode
	closed bool
	ro     bool
}

func (m *MemFS) parentExists(name string) bool {
	return m.dirs[filepath.Dir(name)]
}

// OpenFile implements FS.
func (m *MemFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.files[name]
	if n == nil {
		if flag&os.O_CREATE == 0 {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		if !m.parentExists(name) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		n = &memNode{}
		m.files[name] = n
		m.ops = append(m.ops, "create "+name)
	} else if flag&os.O_EXCL != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	}
	if flag&os.O_TRUNC != 0 {
		n.data = n.data[:0]
	}
	return &memFile{fs: m, name: name, node: n, ro: flag&(os.O_WRONLY|os.O_RDWR) == 0}, nil
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, os.ErrClosed
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, os.ErrClosed
	}
	if f.ro {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: syscall.EBADF}
	}
	err := f.fs.fault()
	if err != nil {
		p = p[:len(p)/2]
	}
	end := off + int64(len(p))
	if end > int64(len(f.node.data)) {
		f.node.data = append(f.node.data, make([]byte, end-int64(len(f.node.data)))...)
	}
	copy(f.node.data[off:], p)
	if err != nil {
		return len(p), &fs.PathError{Op: "write", Path: f.name, Err: err}
	}
	return len(p), nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return os.ErrClosed
	}
	if size > int64(len(f.node.data)) {
		if err := f.fs.fault(); err != nil {
			return &fs.PathError{Op: "truncate", Path: f.name, Err: err}
		}
		f.node.data = append(f.node.data, make([]byte, size-int64(len(f.node.data)))...)
	} else {
		f.node.data = f.node.data[:size]
	}
	return nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return os.ErrClosed
	}
	if f.fs.syncErr != nil {
		return &fs.PathError{Op: "sync", Path: f.name, Err: f.fs.syncErr}
	}
	f.node.synced = append(f.node.synced[:0], f.node.data...)
	f.fs.ops = append(f.fs.ops, "sync "+f.name)
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return int64(len(f.node.data)), nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return os.ErrClosed
	}
	f.closed = true
	return nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; ok {
		delete(m.files, name)
		m.ops = append(m.ops, "remove "+name)
		return nil
	}
	if m.dirs[name] {
		for p := range m.files {
			if filepath.Dir(p) == name {
				return &fs.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
			}
		}
		delete(m.dirs, name)
		return nil
	}
	return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
}

// RemoveAll implements FS.
func (m *MemFS) RemoveAll(name string) error {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	pre := name + string(filepath.Separator)
	for p := range m.files {
		if p == name || strings.HasPrefix(p, pre) {
			delete(m.files, p)
		}
	}
	for d := range m.dirs {
		if d == name || strings.HasPrefix(d, pre) {
			delete(m.dirs, d)
		}
	}
	m.ops = append(m.ops, "removeall "+name)
	return nil
}

// Rename implements FS (files and directories).
func (m *MemFS) Rename(o, n string) error {
	o, n = filepath.Clean(o), filepath.Clean(n)
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.files[o]; ok {
		if !m.parentExists(n) {
			return &fs.PathError{Op: "rename", Path: n, Err: fs.ErrNotExist}
		}
		delete(m.files, o)
		m.files[n] = f
		m.ops = append(m.ops, "rename "+o+" "+n)
		return nil
	}
	if !m.dirs[o] {
		return &fs.PathError{Op: "rename", Path: o, Err: fs.ErrNotExist}
	}
	pre := o + string(filepath.Separator)
	for p, f := range m.files {
		if strings.HasPrefix(p, pre) {
			delete(m.files, p)
			m.files[n+string(filepath.Separator)+strings.TrimPrefix(p, pre)] = f
		}
	}
	for d := range m.dirs {
		if d == o || strings.HasPrefix(d, pre) {
			delete(m.dirs, d)
			m.dirs[n+strings.TrimPrefix(d, o)] = true
		}
	}
	m.ops = append(m.ops, "rename "+o+" "+n)
	return nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := dir; ; d = filepath.Dir(d) {
		m.dirs[d] = true
		if d == filepath.Dir(d) {
			break
		}
	}
	return nil
}

// ReadDir implements FS.
func (m *MemFS) ReadDir(dir string) ([]DirEntry, error) {
	dir = filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[dir] {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var out []DirEntry
	for p, n := range m.files {
		if filepath.Dir(p) == dir {
			out = append(out, DirEntry{Name: filepath.Base(p), Size: int64(len(n.data))})
		}
	}
	for d := range m.dirs {
		if d != dir && filepath.Dir(d) == dir {
			out = append(out, DirEntry{Name: filepath.Base(d), IsDir: true})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Stat implements FS.
func (m *MemFS) Stat(name string) (DirEntry, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.files[name]; ok {
		return DirEntry{Name: filepath.Base(name), Size: int64(len(n.data))}, nil
	}
	if m.dirs[name] {
		return DirEntry{Name: filepath.Base(name), IsDir: true}, nil
	}
	return DirEntry{}, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.syncErr != nil {
		return &fs.PathError{Op: "sync", Path: dir, Err: m.syncErr}
	}
	m.ops = append(m.ops, "syncdir "+filepath.Clean(dir))
	return nil
}
