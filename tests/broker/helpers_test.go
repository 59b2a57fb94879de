package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ioLimit bounds every single network read or write a test makes.
const ioLimit = 10 * time.Second

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RequestTimeoutOverhead(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newAdmin(t *testing.T, addr string) *kadm.Client {
	t.Helper()
	return kadm.NewClient(newClient(t, addr))
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func createTopic(t *testing.T, addr, topic string, partitions int32, configs map[string]*string) kadm.CreateTopicResponse {
	t.Helper()
	resp, err := newAdmin(t, addr).CreateTopic(ctxFor(t, 20*time.Second), partitions, 1, configs, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic %s: %v %v", topic, err, resp.Err)
	}
	return resp
}

// endOffset is the log end offset of one partition (ListOffsets latest).
func endOffset(t *testing.T, addr, topic string, partition int32) int64 {
	t.Helper()
	lo, err := newAdmin(t, addr).ListEndOffsets(ctxFor(t, 10*time.Second), topic)
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	o, ok := lo.Lookup(topic, partition)
	if !ok || o.Err != nil {
		t.Fatalf("end offset of %s/%d: found=%v err=%v", topic, partition, ok, o.Err)
	}
	return o.Offset
}

// assertNoPanic fails if the broker printed a Go panic or fatal error.
func assertNoPanic(t *testing.T, b *testbroker.Broker) {
	t.Helper()
	out := b.Output()
	for _, bad := range []string{"panic", "fatal error:"} {
		if strings.Contains(out, bad) {
			t.Errorf("broker output contains %q:\n%s", bad, out)
		}
	}
}

// rawConn is one hand-driven Kafka connection: requests are framed here
// (size, header v1 or v2) and responses are read back by correlation id.
type rawConn struct {
	t    *testing.T
	c    net.Conn
	r    *bufio.Reader
	corr int32
}

func dial(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioLimit)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// frame encodes req (its version already set) as one request frame with
// correlation id corr. The header is v2 (client id plus an empty tag
// section) for flexible versions and v1 otherwise.
func frame(req kmsg.Request, corr int32) []byte {
	return frameRaw(req.Key(), req.GetVersion(), corr, req.IsFlexible(), req.AppendTo(nil))
}

func frameRaw(key, version int16, corr int32, flexible bool, body []byte) []byte {
	b := make([]byte, 4, 64+len(body))
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	clientID := "brokkr-tests"
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	if flexible {
		b = append(b, 0)
	}
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func (rc *rawConn) nextCorr() int32 { rc.corr++; return rc.corr }

func (rc *rawConn) write(p []byte) error {
	_ = rc.c.SetWriteDeadline(time.Now().Add(ioLimit))
	_, err := rc.c.Write(p)
	return err
}

// readFrame reads one response frame: its correlation id and the rest.
func (rc *rawConn) readFrame(limit time.Duration) (int32, []byte, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(limit))
	var hdr [8]byte
	if _, err := io.ReadFull(rc.r, hdr[:4]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 4 || n > 64<<20 {
		return 0, nil, fmt.Errorf("response frame size %d", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(rc.r, buf); err != nil {
		return 0, nil, err
	}
	return int32(binary.BigEndian.Uint32(buf)), buf[4:], nil
}

// decode parses a response body for req (header v0 for ApiVersions and
// non-flexible versions, v1 with a tag section otherwise).
func decode(req kmsg.Request, body []byte) (kmsg.Response, error) {
	if req.IsFlexible() && req.Key() != 18 {
		if len(body) == 0 || body[0] != 0 {
			return nil, fmt.Errorf("response header tag section %x, want 00", body[:min(len(body), 1)])
		}
		body = body[1:]
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decoding %s v%d response: %w", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return resp, nil
}

// roundTrip sends req and reads and decodes its answer.
func (rc *rawConn) roundTrip(req kmsg.Request) (kmsg.Response, error) {
	corr := rc.nextCorr()
	if err := rc.write(frame(req, corr)); err != nil {
		return nil, err
	}
	got, body, err := rc.readFrame(ioLimit)
	if err != nil {
		return nil, err
	}
	if got != corr {
		return nil, fmt.Errorf("correlation id %d, want %d", got, corr)
	}
	return decode(req, body)
}

func (rc *rawConn) mustRoundTrip(req kmsg.Request) kmsg.Response {
	rc.t.Helper()
	resp, err := rc.roundTrip(req)
	if err != nil {
		rc.t.Fatalf("%s v%d: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return resp
}

// expectClosed asserts that the broker closes the connection (EOF or reset)
// within limit without sending any further response.
func (rc *rawConn) expectClosed(limit time.Duration, why string) {
	rc.t.Helper()
	corr, _, err := rc.readFrame(limit)
	switch {
	case err == nil:
		rc.t.Fatalf("%s: got a response (correlation id %d), want the connection closed", why, corr)
	case errors.Is(err, os.ErrDeadlineExceeded):
		rc.t.Fatalf("%s: connection still open after %v, want it closed", why, limit)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isReset(err):
	default:
		rc.t.Fatalf("%s: read error %v, want EOF or reset", why, err)
	}
}

func isReset(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

// apiVersions asks for the advertised versions (v3) on a fresh connection.
func apiVersions(t *testing.T, addr string) map[int16][2]int16 {
	t.Helper()
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	req.ClientSoftwareName, req.ClientSoftwareVersion = "brokkr-tests", "1"
	resp := dial(t, addr).mustRoundTrip(req).(*kmsg.ApiVersionsResponse)
	if resp.ErrorCode != 0 {
		t.Fatalf("ApiVersions v3: error %d", resp.ErrorCode)
	}
	out := map[int16][2]int16{}
	for _, k := range resp.ApiKeys {
		out[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	return out
}

// recordBatch encodes a magic-2 record batch of len(values) uncompressed
// records with the given producer id, epoch and base sequence (pid -1 for a
// non-idempotent batch).
func recordBatch(pid int64, epoch int16, baseSeq int32, values ...string) []byte {
	var recs []byte
	for i, v := range values {
		var r []byte
		r = append(r, 0)                          // attributes
		r = binary.AppendVarint(r, 0)             // timestamp delta
		r = binary.AppendVarint(r, int64(i))      // offset delta
		r = binary.AppendVarint(r, -1)            // null key
		r = binary.AppendVarint(r, int64(len(v))) // value length
		r = append(r, v...)
		r = binary.AppendVarint(r, 0) // no headers
		recs = binary.AppendVarint(recs, int64(len(r)))
		recs = append(recs, r...)
	}
	now := time.Now().UnixMilli()
	b := make([]byte, 0, 61+len(recs))
	b = binary.BigEndian.AppendUint64(b, 0)                     // base offset
	b = binary.BigEndian.AppendUint32(b, 0)                     // batch length, below
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)            // partition leader epoch
	b = append(b, 2)                                            // magic
	b = binary.BigEndian.AppendUint32(b, 0)                     // crc, below
	b = binary.BigEndian.AppendUint16(b, 0)                     // attributes
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)-1)) // last offset delta
	b = binary.BigEndian.AppendUint64(b, uint64(now))           // first timestamp
	b = binary.BigEndian.AppendUint64(b, uint64(now))           // max timestamp
	b = binary.BigEndian.AppendUint64(b, uint64(pid))           // producer id
	b = binary.BigEndian.AppendUint16(b, uint16(epoch))         // producer epoch
	b = binary.BigEndian.AppendUint32(b, uint32(baseSeq))       // base sequence
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)))   // record count
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// produceReq is a one-partition ProduceRequest at version v.
func produceReq(v int16, acks int16, topic string, partition int32, batch []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(v)
	req.Acks = acks
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// onlyPartition returns the single partition answer of a one-partition
// ProduceResponse.
func onlyPartition(t *testing.T, resp kmsg.Response) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	pr := resp.(*kmsg.ProduceResponse)
	if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
		t.Fatalf("produce response has %d topics, want 1 with 1 partition: %+v", len(pr.Topics), pr.Topics)
	}
	return pr.Topics[0].Partitions[0]
}

// consumeValues reads every record of topic from the start until it has
// read up to the current end offsets, and returns the values per partition.
func consumeValues(t *testing.T, addr, topic string) map[int32][]string {
	t.Helper()
	adm := newAdmin(t, addr)
	ctx := ctxFor(t, 30*time.Second)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{}
	remaining := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			remaining++
		}
	})
	got := map[int32][]string{}
	if remaining == 0 {
		return got
	}
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consuming %s: time-out with %d partitions unfinished (%v)", topic, remaining, fs.Errors())
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if int64(len(got[r.Partition])) != r.Offset {
				t.Fatalf("%s/%d: record at offset %d after %d records", topic, r.Partition, r.Offset, len(got[r.Partition]))
			}
			got[r.Partition] = append(got[r.Partition], string(r.Value))
			if r.Offset == end-1 {
				remaining--
			}
		})
	}
	return got
}

// checkAcked asserts that every acknowledged value (per partition, in
// acknowledgement order) is in got, in the same order, and that got holds
// no value twice and nothing out of order. Values are "v<n>" with n rising.
func checkAcked(t *testing.T, got map[int32][]string, acked map[int32][]int) {
	t.Helper()
	total := 0
	for p, vals := range got {
		last := -1
		for i, v := range vals {
			n, err := strconv.Atoi(strings.TrimPrefix(v, "v"))
			if err != nil {
				t.Fatalf("partition %d offset %d: value %q", p, i, v)
			}
			if n <= last {
				t.Fatalf("partition %d offset %d: value %d after %d (duplicate or out of order)", p, i, n, last)
			}
			last = n
		}
		total += len(vals)
	}
	nAcked := 0
	for p, ns := range acked {
		present := map[string]bool{}
		for _, v := range got[p] {
			present[v] = true
		}
		for _, n := range ns {
			if !present["v"+strconv.Itoa(n)] {
				t.Fatalf("partition %d: acknowledged record v%d is missing (partition holds %d records)", p, n, len(got[p]))
			}
		}
		nAcked += len(ns)
	}
	t.Logf("%d records acknowledged, %d read back", nAcked, total)
}
