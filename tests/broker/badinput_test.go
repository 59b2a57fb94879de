package broker

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// requestMax is the socket.request.max.bytes the bad-input test runs with
// (message.max.bytes must stay below it).
const requestMax = 2 << 20

// TestBadInputHurtsOnlyItsConnection sends, on raw connections, every kind
// of bad input issue 3 item 4 names, while a franz-go producer on its own
// connection keeps producing: each bad connection is answered or closed as
// Kafka does, and not one of the producer's records fails.
func TestBadInputHurtsOnlyItsConnection(t *testing.T) {
	admin := freeAddr(t)
	b := testbroker.Start(t, "socket.request.max.bytes="+strconv.Itoa(requestMax), "brokkr.admin.listener="+admin)
	createTopic(t, b.Addr, "steady", 1, nil)

	// The bystander: a producer that produces one record at a time for the
	// whole test and counts successes and failures.
	prod := newClient(t, b.Addr, kgo.DefaultProduceTopic("steady"), kgo.ProducerLinger(0))
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("v" + strconv.Itoa(i))}).FirstErr()
			cancel()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			} else {
				ok.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// progress waits until the bystander has produced n more records.
	progress := func(what string) {
		t.Helper()
		from := ok.Load()
		testbroker.Eventually(t, 10*time.Second, "the steady producer makes progress "+what, func() bool { return ok.Load() >= from+3 })
	}
	progress("at the start")

	t.Run("unknown key pipelined", func(t *testing.T) {
		rc := dial(t, b.Addr)
		av := kmsg.NewPtrApiVersionsRequest()
		av.SetVersion(3)
		av.ClientSoftwareName, av.ClientSoftwareVersion = "brokkr-tests", "1"
		md := kmsg.NewPtrMetadataRequest()
		md.SetVersion(9)
		var pipe []byte
		pipe = append(pipe, frame(av, 1)...)
		pipe = append(pipe, frameRaw(999, 0, 2, false, []byte{0, 0, 0, 0})...)
		pipe = append(pipe, frame(md, 3)...)
		if err := rc.write(pipe); err != nil {
			t.Fatal(err)
		}
		corr, body, err := rc.readFrame(ioLimit)
		if err != nil || corr != 1 {
			t.Fatalf("first pipelined request (ApiVersions): corr %d err %v, want its answer", corr, err)
		}
		resp, err := decode(av, body)
		if err != nil {
			t.Fatal(err)
		}
		if ec := resp.(*kmsg.ApiVersionsResponse).ErrorCode; ec != 0 {
			t.Fatalf("ApiVersions error %d", ec)
		}
		rc.expectClosed(5*time.Second, "after an unknown API key 999")
	})
	progress("after an unknown key")

	t.Run("future ApiVersions version pipelined", func(t *testing.T) {
		rc := dial(t, b.Addr)
		// A v4 body labelled v99 with a flexible (v2) header, as a newer
		// client would send it, pipelined with valid requests behind it:
		// all three are answered, in order.
		av := kmsg.NewPtrApiVersionsRequest()
		av.SetVersion(4)
		av.ClientSoftwareName, av.ClientSoftwareVersion = "future-client", "9"
		md := kmsg.NewPtrMetadataRequest()
		md.SetVersion(9)
		av3 := kmsg.NewPtrApiVersionsRequest()
		av3.SetVersion(3)
		av3.ClientSoftwareName, av3.ClientSoftwareVersion = "future-client", "9"
		var pipe []byte
		pipe = append(pipe, frameRaw(18, 99, 7, true, av.AppendTo(nil))...)
		pipe = append(pipe, frame(md, 8)...)
		pipe = append(pipe, frame(av3, 9)...)
		if err := rc.write(pipe); err != nil {
			t.Fatal(err)
		}
		corr, body, err := rc.readFrame(ioLimit)
		if err != nil || corr != 7 {
			t.Fatalf("ApiVersions v99: corr %d err %v, want an answer to 7", corr, err)
		}
		v0 := kmsg.NewPtrApiVersionsResponse()
		v0.SetVersion(0)
		if err := v0.ReadFrom(body); err != nil {
			t.Fatalf("ApiVersions v99 answer is not a v0 body: %v (% x)", err, body)
		}
		if v0.ErrorCode != kerr.UnsupportedVersion.Code {
			t.Errorf("ApiVersions v99: error %d, want UNSUPPORTED_VERSION (%d)", v0.ErrorCode, kerr.UnsupportedVersion.Code)
		}
		found := false
		for _, k := range v0.ApiKeys {
			if k.ApiKey == 18 {
				found = true
				if k.MinVersion != 0 || k.MaxVersion < 3 {
					t.Errorf("ApiVersions range v%d-v%d in the KIP-511 answer, want v0-v3 or more", k.MinVersion, k.MaxVersion)
				}
			}
		}
		if !found {
			t.Errorf("KIP-511 answer does not list ApiVersions' range: %+v", v0.ApiKeys)
		}
		// The connection stays usable: the pipelined requests are answered.
		corr, body, err = rc.readFrame(ioLimit)
		if err != nil || corr != 8 {
			t.Fatalf("Metadata pipelined after ApiVersions v99: corr %d err %v, want an answer to 8", corr, err)
		}
		if r, err := decode(md, body); err != nil || len(r.(*kmsg.MetadataResponse).Brokers) != 1 {
			t.Fatalf("Metadata after ApiVersions v99: %v %+v", err, r)
		}
		corr, body, err = rc.readFrame(ioLimit)
		if err != nil || corr != 9 {
			t.Fatalf("ApiVersions v3 pipelined after v99: corr %d err %v, want an answer to 9", corr, err)
		}
		if r, err := decode(av3, body); err != nil || r.(*kmsg.ApiVersionsResponse).ErrorCode != 0 || len(r.(*kmsg.ApiVersionsResponse).ApiKeys) < 10 {
			t.Fatalf("ApiVersions v3 after v99: %v %+v", err, r)
		}
	})
	progress("after a future ApiVersions")

	t.Run("Fetch v3 below the floor", func(t *testing.T) {
		rc := dial(t, b.Addr)
		f := kmsg.NewPtrFetchRequest()
		f.SetVersion(3)
		if err := rc.write(frame(f, 1)); err != nil {
			t.Fatal(err)
		}
		rc.expectClosed(5*time.Second, "after Fetch v3")
	})
	t.Run("Metadata above the maximum pipelined", func(t *testing.T) {
		max := apiVersions(t, b.Addr)[3][1]
		rc := dial(t, b.Addr)
		md := kmsg.NewPtrMetadataRequest()
		md.SetVersion(max)
		var pipe []byte
		pipe = append(pipe, frame(md, 1)...)
		pipe = append(pipe, frameRaw(3, max+1, 2, true, md.AppendTo(nil))...)
		pipe = append(pipe, frame(md, 3)...)
		if err := rc.write(pipe); err != nil {
			t.Fatal(err)
		}
		corr, body, err := rc.readFrame(ioLimit)
		if err != nil || corr != 1 {
			t.Fatalf("Metadata v%d before the future version: corr %d err %v, want its answer", max, corr, err)
		}
		if _, err := decode(md, body); err != nil {
			t.Fatal(err)
		}
		rc.expectClosed(5*time.Second, "after Metadata v"+strconv.Itoa(int(max+1)))
	})
	progress("after unsupported versions")

	t.Run("truncated body", func(t *testing.T) {
		// A CreateTopics v4 body cut in the middle of its first topic name:
		// the frame is complete, its content is not.
		ct := kmsg.NewPtrCreateTopicsRequest()
		ct.SetVersion(4)
		tp := kmsg.NewCreateTopicsRequestTopic()
		tp.Topic, tp.NumPartitions, tp.ReplicationFactor = "never-created", 1, 1
		ct.Topics = append(ct.Topics, tp)
		body := ct.AppendTo(nil)
		rc := dial(t, b.Addr)
		if err := rc.write(frameRaw(19, 4, 1, false, body[:8])); err != nil {
			t.Fatal(err)
		}
		rc.expectClosed(5*time.Second, "after a truncated CreateTopics body")
	})
	t.Run("garbage body", func(t *testing.T) {
		// Metadata v1: topics array claiming 2^31-1 entries, then nothing.
		rc := dial(t, b.Addr)
		if err := rc.write(frameRaw(3, 1, 1, false, []byte{0x7f, 0xff, 0xff, 0xff, 0xde, 0xad})); err != nil {
			t.Fatal(err)
		}
		rc.expectClosed(5*time.Second, "after a Metadata body announcing 2^31-1 topics")
	})
	t.Run("frame shorter than a header", func(t *testing.T) {
		rc := dial(t, b.Addr)
		if err := rc.write([]byte{0, 0, 0, 3, 0, 3, 0}); err != nil {
			t.Fatal(err)
		}
		rc.expectClosed(5*time.Second, "after a 3-byte frame")
	})
	progress("after malformed bodies")

	t.Run("oversized size prefix", func(t *testing.T) {
		vmBefore := vmSizeKiB(t, b.PID())
		// Several connections each announce a ~2 GiB request (above the
		// 2 MiB socket.request.max.bytes) and send a few bytes of it. Each
		// must be closed at once, long before the body could arrive, and
		// the broker must not have reserved the announced sizes.
		const conns = 8
		var rcs []*rawConn
		for i := 0; i < conns; i++ {
			rc := dial(t, b.Addr)
			p := make([]byte, 4, 64)
			binary.BigEndian.PutUint32(p, 0x7ffffff0)
			p = append(p, frameRaw(3, 1, 1, false, nil)[4:]...)
			if err := rc.write(p); err != nil {
				t.Fatal(err)
			}
			rcs = append(rcs, rc)
		}
		for i, rc := range rcs {
			rc.expectClosed(5*time.Second, "connection "+strconv.Itoa(i)+" after a 2 GiB size prefix")
		}
		vmAfter := vmSizeKiB(t, b.PID())
		t.Logf("broker VmSize %d MiB before, %d MiB after %d announced 2 GiB requests", vmBefore>>10, vmAfter>>10, conns)
		if vmAfter-vmBefore > 1<<20 {
			t.Errorf("broker VmSize grew by %d MiB after oversized size prefixes: it reserved the announced sizes", (vmAfter-vmBefore)>>10)
		}
		// A request just above the limit but complete is refused too.
		rc := dial(t, b.Addr)
		big := frameRaw(3, 1, 1, false, make([]byte, requestMax))
		_ = rc.write(big) // the broker may close before it is all written
		rc.expectClosed(5*time.Second, "after a complete request above socket.request.max.bytes")
	})
	progress("after oversized size prefixes")

	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("the steady producer saw %d failures (first: %v) while other connections sent bad input; %d succeeded", n, firstErr.Load(), ok.Load())
	}
	t.Logf("steady producer: %d records produced during the bad input", ok.Load())
	if got := endOffset(t, b.Addr, "steady", 0); got != ok.Load() {
		t.Errorf("steady: end offset %d, want the %d acknowledged records", got, ok.Load())
	}

	// The broker still serves new connections and has not panicked.
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(0)
	if r := dial(t, b.Addr).mustRoundTrip(md).(*kmsg.MetadataResponse); len(r.Brokers) != 1 {
		t.Fatalf("Metadata v0 on a new connection: %d brokers", len(r.Brokers))
	}
	assertNoPanic(t, b)

	// Every case was counted.
	m := scrapeMetrics(t, admin)
	for _, c := range []struct {
		name string
		min  float64
	}{
		{"brokkr_network_unknown_api_keys_total", 1},     // key 999
		{"brokkr_requests_unsupported_version_total", 3}, // ApiVersions v99, Fetch v3, Metadata max+1
		{"brokkr_requests_malformed_total", 2},           // truncated CreateTopics, garbage Metadata
		{"brokkr_network_malformed_headers_total", 1},    // the 3-byte frame
		{"brokkr_network_frames_too_large_total", 9},     // 8 announced, 1 sent
	} {
		t.Logf("%s = %v", c.name, m[c.name])
		if v, ok := m[c.name]; !ok || v < c.min {
			t.Errorf("metric %s = %v (present %v), want at least %v", c.name, v, ok, c.min)
		}
	}
	if v, ok := m["brokkr_network_panics_recovered_total"]; !ok || v != 0 {
		t.Errorf("brokkr_network_panics_recovered_total = %v (present %v), want 0", v, ok)
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago (for listeners whose chosen port the broker does not print).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrapeMetrics reads the broker's Prometheus text exposition.
func scrapeMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	cl := &http.Client{Timeout: ioLimit}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %v %s", err, resp.Status)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

// vmSizeKiB is a process's virtual memory size (address space reserved).
func vmSizeKiB(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmSize:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no VmSize in /proc/%d/status", pid)
	return 0
}
