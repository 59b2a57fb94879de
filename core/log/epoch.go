package log

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/brokkr/brokkr/segment"
)

// EpochEntry is one leader-epoch-checkpoint line: the first offset
// written in a leader epoch.
type EpochEntry struct {
	Epoch       int32
	StartOffset int64
}

// UndefinedEpoch and UndefinedEpochOffset are Kafka's -1 answers.
const (
	UndefinedEpoch       int32 = -1
	UndefinedEpochOffset int64 = -1
)

const epochFile = "leader-epoch-checkpoint"

type epochCache struct {
	fs      segment.FS
	path    string
	entries []EpochEntry
}

func loadEpochCache(fsys segment.FS, dir string) (*epochCache, error) {
	c := &epochCache{fs: fsys, path: filepath.Join(dir, epochFile)}
	lines, err := readCheckpointFile(fsys, c.path, 2)
	if err != nil {
		return nil, err
	}
	for i, l := range lines {
		e, err1 := strconv.ParseInt(l[0], 10, 32)
		o, err2 := strconv.ParseInt(l[1], 10, 64)
		if err1 != nil || err2 != nil || e < 0 || o < 0 {
			return nil, fmt.Errorf("%s:%d: bad entry %q", c.path, i+3, l)
		}
		if n := len(c.entries); n > 0 && (int32(e) <= c.entries[n-1].Epoch || o < c.entries[n-1].StartOffset) {
			return nil, fmt.Errorf("%s:%d: entry %q does not increase", c.path, i+3, l)
		}
		c.entries = append(c.entries, EpochEntry{int32(e), o})
	}
	return c, nil
}

func (c *epochCache) persist() error {
	lines := make([]string, len(c.entries))
	for i, e := range c.entries {
		lines[i] = fmt.Sprintf("%d %d", e.Epoch, e.StartOffset)
	}
	return writeCheckpointFile(c.fs, c.path, lines)
}

func (c *epochCache) latest() int32 {
	if len(c.entries) == 0 {
		return UndefinedEpoch
	}
	return c.entries[len(c.entries)-1].Epoch
}

// assign records that epoch starts at offset, if epoch is newer than the
// latest. It reports whether the cache changed.
func (c *epochCache) assign(epoch int32, offset int64) bool {
	if epoch < 0 {
		return false
	}
	if n := len(c.entries); n > 0 {
		last := c.entries[n-1]
		if epoch <= last.Epoch {
			return false
		}
		if offset < last.StartOffset {
			return false
		}
		if offset == last.StartOffset {
			c.entries[n-1].Epoch = epoch // the older epoch wrote nothing
			return true
		}
	}
	c.entries = append(c.entries, EpochEntry{epoch, offset})
	return true
}

// truncateFromEnd drops entries starting at or after offset.
func (c *epochCache) truncateFromEnd(offset int64) bool {
	n := len(c.entries)
	for n > 0 && c.entries[n-1].StartOffset >= offset {
		n--
	}
	changed := n != len(c.entries)
	c.entries = c.entries[:n]
	return changed
}

// truncateFromStart moves the first kept epoch's start up to offset.
func (c *epochCache) truncateFromStart(offset int64) bool {
	i := 0
	for i+1 < len(c.entries) && c.entries[i+1].StartOffset <= offset {
		i++
	}
	changed := i > 0
	c.entries = c.entries[i:]
	if len(c.entries) > 0 && c.entries[0].StartOffset < offset {
		c.entries[0].StartOffset = offset
		changed = true
	}
	return changed
}

// endOffsetFor answers OffsetForLeaderEpoch as Kafka's
// LeaderEpochFileCache.endOffsetFor does.
func (c *epochCache) endOffsetFor(epoch int32, leo int64) (int32, int64) {
	if epoch == UndefinedEpoch || len(c.entries) == 0 {
		return UndefinedEpoch, UndefinedEpochOffset
	}
	if epoch == c.latest() {
		return epoch, leo
	}
	higher := -1
	for i, e := range c.entries {
		if e.Epoch > epoch {
			higher = i
			break
		}
	}
	if higher < 0 {
		return UndefinedEpoch, UndefinedEpochOffset // above the latest epoch
	}
	if higher == 0 {
		return epoch, c.entries[0].StartOffset // below the first epoch
	}
	return c.entries[higher-1].Epoch, c.entries[higher].StartOffset
}
