package log

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/brokkr/brokkr/segment"
)

// readCheckpointFile reads Kafka's checkpoint format: a version line
// ("0"), a count line, then count lines of fields. A missing file is no
// lines and no error.
func readCheckpointFile(fsys segment.FS, name string, fields int) ([][]string, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", segment.ErrStorage, name, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", segment.ErrStorage, name, err)
	}
	if size > 64<<20 {
		return nil, fmt.Errorf("%s: %d bytes is too large for a checkpoint", name, size)
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%w: read %s: %w", segment.ErrStorage, name, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		line++
		return strings.TrimSpace(sc.Text()), true
	}
	v, ok := next()
	if !ok || v != "0" {
		return nil, fmt.Errorf("%s:1: version %q, want 0", name, v)
	}
	c, ok := next()
	n, err := strconv.Atoi(c)
	if !ok || err != nil || n < 0 {
		return nil, fmt.Errorf("%s:2: bad entry count %q", name, c)
	}
	var out [][]string
	for i := 0; i < n; i++ {
		l, ok := next()
		if !ok {
			return nil, fmt.Errorf("%s: %d entries announced, %d present", name, n, i)
		}
		fs := strings.Fields(l)
		if len(fs) != fields {
			return nil, fmt.Errorf("%s:%d: %d fields, want %d", name, line, len(fs), fields)
		}
		out = append(out, fs)
	}
	return out, nil
}

// writeCheckpointFile writes lines atomically: a temp file, fdatasync,
// rename over the old one, sync of the directory.
func writeCheckpointFile(fsys segment.FS, name string, lines []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "0\n%d\n", len(lines))
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	tmp := name + ".tmp"
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("%w: create %s: %w", segment.ErrStorage, tmp, err)
	}
	_, err = f.WriteAt([]byte(b.String()), 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, name)
	}
	if err == nil {
		err = fsys.SyncDir(filepath.Dir(name))
	}
	if err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("%w: write %s: %w", segment.ErrStorage, name, err)
	}
	return nil
}
