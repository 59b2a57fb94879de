package netio

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// miniBroker is a test-only handler that speaks just enough Kafka through
// kmsg (ApiVersions, Metadata, Produce) for a real franz-go client to
// connect, fetch metadata and produce with acks=all and acks=0.
type miniBroker struct {
	host string
	port int32

	mu       sync.Mutex
	records  map[int16][][]byte // acks -> record batches received
	nextOffs int64
}

var miniVersions = map[int16]int16{18: 4, 3: 12, 0: 12}

func (m *miniBroker) Serve(ctx context.Context, req *Request) Response {
	kreq := kmsg.RequestForKey(req.APIKey)
	max, served := miniVersions[req.APIKey]
	if !served {
		return CloseConnection()
	}
	if req.APIVersion > max {
		if req.APIKey == 18 { // KIP-511: answer v0 with the supported ranges
			resp := kmsg.NewPtrApiVersionsResponse()
			resp.ErrorCode = kerr.UnsupportedVersion.Code
			resp.ApiKeys = m.apiKeys()
			return Bytes(resp.AppendTo(nil))
		}
		return CloseConnection()
	}
	kreq.SetVersion(req.APIVersion)
	if err := kreq.ReadFrom(req.Body); err != nil {
		return CloseConnection()
	}
	var resp kmsg.Response
	switch r := kreq.(type) {
	case *kmsg.ApiVersionsRequest:
		rr := kmsg.NewPtrApiVersionsResponse()
		rr.ApiKeys = m.apiKeys()
		resp = rr
	case *kmsg.MetadataRequest:
		rr := kmsg.NewPtrMetadataResponse()
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = 1, m.host, m.port
		rr.Brokers = append(rr.Brokers, b)
		rr.ControllerID = 1
		t := kmsg.NewMetadataResponseTopic()
		t.Topic = kmsg.StringPtr("t")
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Leader, p.Replicas, p.ISR = 1, []int32{1}, []int32{1}
		t.Partitions = append(t.Partitions, p)
		rr.Topics = append(rr.Topics, t)
		resp = rr
	case *kmsg.ProduceRequest:
		rr := kmsg.NewPtrProduceResponse()
		m.mu.Lock()
		for _, t := range r.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				m.records[r.Acks] = append(m.records[r.Acks], p.Records)
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.BaseOffset = p.Partition, m.nextOffs
				m.nextOffs++
				rt.Partitions = append(rt.Partitions, rp)
			}
			rr.Topics = append(rr.Topics, rt)
		}
		m.mu.Unlock()
		if r.Acks == 0 {
			return NoResponse()
		}
		resp = rr
	}
	resp.SetVersion(req.APIVersion)
	return Bytes(resp.AppendTo(nil))
}

func (m *miniBroker) apiKeys() []kmsg.ApiVersionsResponseApiKey {
	var out []kmsg.ApiVersionsResponseApiKey
	for k, v := range miniVersions {
		ak := kmsg.NewApiVersionsResponseApiKey()
		ak.ApiKey, ak.MaxVersion = k, v
		out = append(out, ak)
	}
	return out
}

// tap is a TCP proxy that records what each client connection sends, so
// tests see the exact frames a real client wrote.
type tap struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []*bytes.Buffer
}

func startTap(t *testing.T, target string) *tap {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			rec := &lockedBuffer{mu: &tp.mu}
			tp.mu.Lock()
			tp.conns = append(tp.conns, &rec.buf)
			tp.mu.Unlock()
			go func() { io.Copy(c, s); c.Close() }()
			// Record first: whatever the server saw is already recorded.
			go func() { io.Copy(io.MultiWriter(rec, s), c); s.Close() }()
		}
	}()
	return tp
}

type lockedBuffer struct {
	mu  *sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// streams returns a copy of what each connection sent.
func (tp *tap) streams() [][]byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var out [][]byte
	for _, b := range tp.conns {
		out = append(out, append([]byte(nil), b.Bytes()...))
	}
	return out
}

// A real franz-go client (kgo) talks to a netio server through kmsg:
// ApiVersions with its flexible v2 request header and v0 response header,
// Metadata, Produce with acks=all (answered) and acks=0 (not answered; the
// next request's answer still matches).
func TestRealClientKgo(t *testing.T) {
	mb := &miniBroker{records: map[int16][][]byte{}}
	s := startServer(t, mb, nil)
	tp := startTap(t, s.Addr("PLAINTEXT").String())
	host, portStr, _ := net.SplitHostPort(tp.ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	mb.host, mb.port = host, int32(port)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, acks := range []kgo.Acks{kgo.AllISRAcks(), kgo.NoAck()} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(tp.ln.Addr().String()), kgo.ClientID("brokkr-netio-test"),
			kgo.DefaultProduceTopic("t"), kgo.DisableIdempotentWrite(), kgo.RequiredAcks(acks),
			kgo.ProducerLinger(0))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			rec := &kgo.Record{Key: []byte("k"), Value: []byte(fmt.Sprintf("value-%d", i)),
				Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
			if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatalf("acks %v: produce: %v", acks, err)
			}
		}
		// After (possibly unanswered) produces, a request on the same
		// connection still gets its own answer.
		mreq := kmsg.NewPtrMetadataRequest()
		mresp, err := mreq.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("metadata: %v", err)
		}
		if len(mresp.Brokers) != 1 || mresp.Brokers[0].Port != int32(port) {
			t.Fatalf("metadata brokers %+v", mresp.Brokers)
		}
		cl.Close()
	}
	// acks=0 produces complete for the client once written, so the server
	// may still be reading them.
	eventually(t, 10*time.Second, "3 produce requests per acks setting", func() bool {
		mb.mu.Lock()
		defer mb.mu.Unlock()
		return len(mb.records[-1]) == 3 && len(mb.records[0]) == 3
	})
	mb.mu.Lock()
	defer mb.mu.Unlock()
	for _, batch := range mb.records[0] {
		if !bytes.Contains(batch, []byte("value-")) {
			t.Fatalf("acks=0 batch lacks the record value: %x", batch)
		}
	}

	// Every frame the client wrote decodes with ParseRequestHeader.
	keys := map[int16]int{}
	futureAPIVersions := 0 // ApiVersions above our max: answered v0, client retried
	var frames [][]byte
	for _, stream := range tp.streams() {
		fr := newFrameReader(bytes.NewReader(stream), DefaultMaxRequestBytes)
		for {
			f, err := fr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("recorded stream: %v", err)
			}
			h, _, err := ParseRequestHeader(f)
			if err != nil || h.ClientID == nil || *h.ClientID != "brokkr-netio-test" {
				t.Fatalf("recorded frame: %+v %v", h, err)
			}
			keys[h.APIKey]++
			if h.APIKey == 18 && h.APIVersion > miniVersions[18] {
				futureAPIVersions++
			}
			frames = append(frames, f)
		}
	}
	if keys[18] == 0 || keys[3] == 0 || keys[0] != 6 || futureAPIVersions == 0 || keys[18] <= futureAPIVersions {
		t.Fatalf("recorded keys %v", keys)
	}
	if m := s.Metrics(); m.MalformedHeaders != 0 || m.UnknownAPIKeys != 0 || m.PanicsRecovered != 0 {
		t.Fatalf("metrics %+v", m)
	}
	if os.Getenv("NETIO_WRITE_FUZZ_SEEDS") != "" {
		writeSeeds(t, frames)
	}
}

// writeSeeds stores captured frames (with their size prefix) as the seed
// corpus of FuzzRequestFrame: NETIO_WRITE_FUZZ_SEEDS=1 go test -run RealClient.
func writeSeeds(t *testing.T, frames [][]byte) {
	dir := filepath.Join("testdata", "fuzz", "FuzzRequestFrame")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range frames {
		h, _, _ := ParseRequestHeader(f)
		name := fmt.Sprintf("kgo-key%d-v%d", h.APIKey, h.APIVersion)
		if seen[name] {
			continue
		}
		seen[name] = true
		full := binary.BigEndian.AppendUint32(nil, uint32(len(f)))
		full = append(full, f...)
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", full)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote seed %s (%d bytes)", name, len(full))
	}
}
