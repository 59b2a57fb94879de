package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// stateFile is the on-disk form of the replica (Config.StateFile).
type stateFile struct {
	Format  int       `json:"format"`
	State   pushState `json:"state"`
	MaxTerm term      `json:"max_term"`
}

const stateFormat = 1

// loadState merges the state file into the (empty) replica. A missing file
// is a first start; an unreadable one fails Open rather than starting
// empty and losing its records.
func (b *Backend) loadState(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("gossip: read state file: %w", err)
	}
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil {
		return fmt.Errorf("gossip: state file %s is damaged (%v); move it away to start with no local state", path, err)
	}
	if sf.Format != stateFormat {
		return fmt.Errorf("gossip: state file %s has format %d, this version reads %d", path, sf.Format, stateFormat)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range sf.State.Entries {
		if e != nil && checkKey(e.Key) == nil {
			b.st.apply(e)
		}
	}
	if sf.State.Claim != nil {
		b.st.applyClaim(*sf.State.Claim)
	}
	b.st.observeTerm(sf.MaxTerm)
	b.log.Info("state loaded", "file", path, "entries", len(b.st.entries), "epoch", b.st.maxTerm.Epoch)
	return nil
}

// persistLoop writes the replica to the state file after changes, at most
// every 100 ms, and once more on Close.
func (b *Backend) persistLoop() {
	defer b.wg.Done()
	var saved uint64
	save := func() {
		b.mu.Lock()
		gen := b.st.gen
		if gen == saved {
			b.mu.Unlock()
			return
		}
		data, err := json.Marshal(stateFile{Format: stateFormat, State: b.st.snapshot(), MaxTerm: b.st.maxTerm})
		b.mu.Unlock()
		if err == nil {
			err = writeFileAtomic(b.cfg.StateFile, data)
		}
		if err != nil {
			b.log.Error("cannot write state file; the replica lives on in memory and in the other members", "file", b.cfg.StateFile, "err", err)
			return
		}
		saved = gen
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			save()
			return
		case <-t.C:
			save()
		}
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
