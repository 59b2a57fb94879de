// Package segment is one log segment on disk: a .log file of Kafka v2
// record batches stored exactly as received, a sparse offset index (.index)
// and a time index (.timeindex). It appends already validated batches,
// looks up offsets and timestamps, hands out file regions for zero-copy
// reads, truncates, flushes, and recovers a torn or corrupt tail. It knows
// nothing of topics, partitions or the network (core/log does).
//
// # Files
//
// A segment whose first offset is B is three files named by B as 20 decimal
// digits, as in Kafka: 00000000000000000000.log, .index, .timeindex.
//
// # .log: record batches, magic 2 (all integers big-endian)
//
//	offset  size  field
//	     0     8  baseOffset            rewritten on append (outside the CRC)
//	     8     4  batchLength           bytes after this field
//	    12     4  partitionLeaderEpoch  rewritten on append (outside the CRC)
//	    16     1  magic                 must be 2
//	    17     4  crc                   CRC-32C (Castagnoli) of bytes 21..end
//	    21     2  attributes            bits 0-2 codec, 3 timestamp type,
//	                                    4 transactional, 5 control
//	    23     4  lastOffsetDelta
//	    27     8  baseTimestamp
//	    35     8  maxTimestamp
//	    43     8  producerId
//	    51     2  producerEpoch
//	    53     4  baseSequence
//	    57     4  records count
//	    61     …  records (compressed as a whole when codec != 0)
//
// A batch occupies 12 + batchLength bytes. Uncompressed, each record is
//
//	length varint | attributes int8 | timestampDelta varlong |
//	offsetDelta varint | keyLength varint | key | valueLength varint | value |
//	headers count varint | (keyLength varint key valueLength varint value)*
//
// with zig-zag varints (encoding/binary.Varint) and length -1 meaning null.
// Batches follow each other with no gap; the file ends after the last
// complete batch (anything else is a torn tail and is cut by recovery).
//
// # .index: sparse offset index, 8-byte entries
//
//	0  4  relative offset (batch last offset - B), uint32
//	4  4  position of the batch's first byte in .log, uint32
//
// An entry is added for a batch when more than index.interval.bytes (4096)
// of log were appended since the previous entry (so the first batch of a
// segment never has one and every entry's position is > 0). Entries are
// strictly increasing in both fields. Looking up offset O: binary search
// for the last entry with offset <= O, then read batch headers forward
// from its position to the first batch whose last offset >= O.
//
// # .timeindex: 12-byte entries
//
//	0  8  timestamp (the segment's max timestamp so far), int64
//	8  4  relative offset of the batch holding that timestamp, uint32
//
// Written at the same moments as .index entries, only when the max
// timestamp grew, so it is strictly increasing; a final entry is added when
// the segment is sealed or closed.
//
// Both index files are preallocated to segment.index.bytes (10 MiB) and
// memory-mapped while the segment is active (heap copies when the file
// system gives no descriptor), and trimmed to their real size on roll and
// on clean close. Zero bytes past the last entry mark the end of an
// untrimmed index.
//
// # Damage
//
// Recovery reads batches from a position, checks each header and CRC, and
// cuts the file at the first batch that is incomplete (a torn tail) or
// fails its CRC or header checks (corruption). It returns a Recovery that
// says what was cut: nothing is dropped silently. A missing or insane index
// is rebuilt from the log.
//
// # File systems
//
// All I/O goes through FS. OSFS is the real one; MemFS keeps files in memory
// and can simulate a crash (only synced bytes survive) and inject errors
// such as ENOSPC or EIO on the Nth write. Zero-copy and mmap are
// capabilities: a File that implements OSFiler exposes its *os.File.
//
// # Concurrency
//
// A Segment is not safe for concurrent mutation: the caller (core/log)
// serialises Append, TruncateTo, Seal, Flush and Close, and may call
// lookups and Read concurrently with each other under a read lock.
package segment
