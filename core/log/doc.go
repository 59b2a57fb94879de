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
// # Locking
//
// One RWMutex per Log: Append, TruncateTo, DeleteSegmentsBelow, Flush and
// Close take it exclusively; Read, lookups and accessors share it. Read
// returns a Region whose file stays open until Release, so record bytes
// are sent zero-copy after the lock is dropped. Manager's mutex guards its
// map only and is never held while a Log's lock is taken for I/O.
package log
