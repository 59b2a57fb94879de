package broker

import (
	"github.com/brokkr/brokkr/netio"
	"github.com/twmb/franz-go/pkg/kbin"
)

// fetchOut is one partition of a Fetch response as the zero-copy encoder
// writes it: header fields encoded here, record bytes as file regions.
type fetchOut struct {
	partition        int32
	errCode          int16
	highWatermark    int64
	lastStable       int64
	logStart         int64
	records          []netio.Chunk // file regions (or bytes) of whole batches
	recordsLen       int64
	divergingEpoch   *[2]int64 // epoch, end offset (v12+ tag 0)
	currentLeader    *[2]int32 // leader id, leader epoch (v12+ tag 1)
	preferredReplica int32
}

type fetchTopicOut struct {
	name       string
	id         [16]byte
	partitions []fetchOut
}

// encodeFetch writes a Fetch response body of the given version as chunks:
// everything but the record bytes is encoded in user space, and the record
// bytes stay file regions that netio sends with sendfile. The layout is
// kmsg's FetchResponse, field for field (fetch_encode_test.go checks the
// bytes against kmsg.FetchResponse.AppendTo for every served version).
func encodeFetch(version int16, errCode int16, sessionID int32, topics []fetchTopicOut) []netio.Chunk {
	flex := version >= 12
	var chunks []netio.Chunk
	buf := make([]byte, 0, 256)
	flush := func() {
		if len(buf) > 0 {
			chunks = append(chunks, netio.BytesChunk(buf))
			buf = make([]byte, 0, 128)
		}
	}
	arrayLen := func(n int) {
		if flex {
			buf = kbin.AppendCompactArrayLen(buf, n)
		} else {
			buf = kbin.AppendArrayLen(buf, n)
		}
	}
	if version >= 1 {
		buf = kbin.AppendInt32(buf, 0) // throttle
	}
	if version >= 7 {
		buf = kbin.AppendInt16(buf, errCode)
		buf = kbin.AppendInt32(buf, sessionID)
	}
	arrayLen(len(topics))
	for _, t := range topics {
		if version <= 12 {
			if flex {
				buf = kbin.AppendCompactString(buf, t.name)
			} else {
				buf = kbin.AppendString(buf, t.name)
			}
		} else {
			buf = kbin.AppendUuid(buf, t.id)
		}
		arrayLen(len(t.partitions))
		for _, p := range t.partitions {
			buf = kbin.AppendInt32(buf, p.partition)
			buf = kbin.AppendInt16(buf, p.errCode)
			buf = kbin.AppendInt64(buf, p.highWatermark)
			if version >= 4 {
				buf = kbin.AppendInt64(buf, p.lastStable)
			}
			if version >= 5 {
				buf = kbin.AppendInt64(buf, p.logStart)
			}
			if version >= 4 { // aborted transactions: null (no transactions)
				if flex {
					buf = kbin.AppendCompactNullableArrayLen(buf, 0, true)
				} else {
					buf = kbin.AppendNullableArrayLen(buf, 0, true)
				}
			}
			if version >= 11 {
				buf = kbin.AppendInt32(buf, p.preferredReplica)
			}
			// Records: the length, then the regions themselves.
			if flex {
				buf = kbin.AppendUvarint(buf, uint32(p.recordsLen+1))
			} else {
				buf = kbin.AppendInt32(buf, int32(p.recordsLen))
			}
			if p.recordsLen > 0 {
				flush()
				chunks = append(chunks, p.records...)
			}
			if flex {
				n := 0
				if p.divergingEpoch != nil {
					n++
				}
				if p.currentLeader != nil {
					n++
				}
				buf = kbin.AppendUvarint(buf, uint32(n))
				if d := p.divergingEpoch; d != nil {
					buf = kbin.AppendUvarint(buf, 0)
					buf = kbin.AppendUvarint(buf, 4+8+1)
					buf = kbin.AppendInt32(buf, int32(d[0]))
					buf = kbin.AppendInt64(buf, d[1])
					buf = kbin.AppendUvarint(buf, 0)
				}
				if l := p.currentLeader; l != nil {
					buf = kbin.AppendUvarint(buf, 1)
					buf = kbin.AppendUvarint(buf, 4+4+1)
					buf = kbin.AppendInt32(buf, l[0])
					buf = kbin.AppendInt32(buf, l[1])
					buf = kbin.AppendUvarint(buf, 0)
				}
			}
		}
		if flex {
			buf = kbin.AppendUvarint(buf, 0)
		}
	}
	if flex {
		buf = kbin.AppendUvarint(buf, 0)
	}
	flush()
	return chunks
}
