// Package log is a partition's log: the ordered segments of one
// <log.dir>/<topic>-<partition>/ directory, offsets, roll, truncation,
// retention by whole segments, the leader-epoch cache, flushing, and
// recovery after a crash. Manager owns every partition of a broker's
// log.dirs, the per-dir recovery-point-offset-checkpoint and the
// clean-shutdown marker.
//
// # Files
//
//	<log.dir>/.kafka_cleanshutdown              written last by a clean Close
//	<log.dir>/recovery-point-offset-checkpoint  "0\n<n>\n<topic> <partition> <offset>\n"...
//	<log.dir>/<topic>-<partition>/00000000000000000000.log|.index|.timeindex
//	<log.dir>/<topic>-<partition>/leader-epoch-checkpoint  "0\n<n>\n<epoch> <startOffset>\n"...
//	<log.dir>/<topic>-<partition>.<id>-delete/  a partition being deleted
//	<log.dir>/<topic>-<partition>/cleaner-offset-checkpoint  "0\n1\n<cleanedTo>\n" (see Cleaning)
//	<log.dir>/<topic>-<partition>/cleaner-swap  commit record of a clean being swapped in
//	<log.dir>/<topic>-<partition>/<base>.log|.index|.timeindex.cleaned  a clean's output
//	<log.dir>/<topic>-<partition>/cleaner-staging/  where a clean builds its output
//
// # Invariants
//
//   - log start offset <= high watermark <= log end offset (LEO).
//   - recovery point <= LEO; every offset below the recovery point is on
//     disk (fdatasync'd, indexes msync'd) and its segment is not re-read
//     at start unless the segment also holds offsets >= the recovery point.
//   - the clean-shutdown marker exists only while no log of the dir is open
//     and only after every log was flushed and closed without error.
//   - a failed write leaves the LEO, the files as readers see them and the
//     leader-epoch cache unchanged; the error wraps ErrStorage.
//
// # Cleaning
//
// Clean (cleaner.go) compacts a log with a plugins.CompactionPolicy, as
// Kafka's LogCleaner. The first uncleanable offset is min(active segment
// base, high watermark, base of the first segment holding a record newer
// than now - min.compaction.lag.ms); only whole segments below it are
// cleaned. The dirty section runs from the cleaner checkpoint (CleanedTo,
// a segment base) to there: its records are shown to the pass's Scan;
// then every record of every cleanable segment is shown to Survivors (in
// batches of BatchRecords, each answer checked by plugins.ValidateSurvivors)
// and the survivors are written, offsets unchanged, into new segments:
// adjacent segments are grouped as Kafka's groupSegmentsBySize (total
// .log bytes <= segment.bytes, offset indexes <= segment.index.bytes,
// offsets within 32 bits of the group's base), each group's output is
// named by the group's first base. A fully kept batch is copied byte for
// byte, a partly kept one re-encoded (codec.EncodeBatch: same base offset,
// last offset delta, producer id/epoch/sequence, leader epoch, attributes
// and codec), an emptied one dropped; control batches are kept whole and
// never shown to the policy. An empty output is dropped, except the first
// group's, so the log start offset keeps its segment.
//
// Crash safety: a clean writes its outputs in cleaner-staging/, syncs
// them (data and trimmed indexes), moves them next to the log as
// <base><ext>.cleaned and syncs the directory, and writes and syncs its
// commit record as cleaner-swap.tmp: the replaced bases ("old"), the new
// bases ("new", a subset of the old) and the new checkpoint — all without
// the log's lock. It then takes the lock, checks that the segments it read
// are still the log's (else ErrCleanAborted; but if retention deleted
// whole groups from the front meanwhile, their outputs are removed, with a
// directory sync, and the rest goes on), and commits: renames
// cleaner-swap.tmp to cleaner-swap and syncs the directory. Still under the
// lock it renames every <new><ext>.cleaned over <new><ext>, removes the
// files of every old base that is not a new base, opens the new segments,
// swaps the segment list and closes the old segments (readers holding
// regions keep their open files). After the lock: directory sync,
// cleaner-offset-checkpoint written, cleaner-swap removed, directory sync.
// Appends and fetches wait only for the commit's one directory sync and
// the renames (CleanResult.SwapTook).
//
// The recovery rule, run first by Open: cleaner-staging/ is removed; if
// cleaner-swap exists, the renames and removals are run again (each is
// idempotent: a .cleaned file still present is renamed, old-only files
// still present are removed), then the directory is synced, the checkpoint
// written and the record removed; then any other *.cleaned file and
// cleaner-swap.tmp belong to an uncommitted clean and are removed. So a
// crash before the record's rename is durable leaves exactly the old
// segment set, a crash after it exactly the new one. While a record
// exists no segment may be created with one of its old bases (a replay
// would remove it); only a truncation followed by appends could, so
// TruncateTo completes a pending record first, as does the next Clean.
// The commit record replaces Kafka's per-group .swap files: one record
// makes a whole clean (all groups) one unit, and it names the replaced
// segments, which a .swap file cannot when the cleaner removed the last
// records of its group. A failure during the renames takes the log
// offline (ErrStorage, as Kafka marks the dir offline); Open completes it.
//
// Below the cleaner checkpoint a segment may end before the next begins
// (its last records were removed) and the first segment may be empty;
// recovery accepts both there (everything there was synced by the
// cleaner). TruncateTo lowers the checkpoint to the new active segment's
// base. Not done: Kafka's rule keeping the last (emptied) batch of each
// idempotent producer (a v2 batch here always holds a record), and the
// removal of aborted transactional data.
//
// # Locking
//
// One RWMutex per Log: Append, TruncateTo, DeleteSegmentsBelow, Flush and
// Close take it exclusively; Read, lookups and accessors share it. Clean
// holds its own mutex (one clean per log at a time, taken before the
// Log's) and takes the Log's exclusively only for the commit and swap;
// it reads the segments through regions taken under the shared lock. A
// third mutex, cleanerState.finishMu, guards the pending commit record and
// the checkpoint file; it is taken after the Log's lock, never before. Read
// returns a Region whose file stays open until Release, so record bytes
// are sent zero-copy after the lock is dropped. Manager's mutex guards its
// map only and is never held while a Log's lock is taken for I/O.
package log
