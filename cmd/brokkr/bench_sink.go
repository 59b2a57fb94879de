package main

// The sink: a tiny Kafka-protocol server that acknowledges every Produce and
// keeps nothing. Running the same franz-go producer against it measures the
// client's own ceiling on this machine, which is what the broker's produce
// throughput is compared with (docs/benchmarks.md, Broker).
//
// It answers ApiVersions, Metadata (itself as the only broker, node 0; every
// requested topic with --partitions partitions, itself the leader),
// CreateTopics (success), InitProducerId (one producer id per request) and
// Produce (success, offsets increasing per partition by the batches' record
// counts). Everything else closes the connection, as netio does for an
// unknown key.

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/brokkr/brokkr/netio"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sinkAPIs are the APIs the sink answers, with the versions it serves:
// kmsg's full range for each (kmsg encodes and decodes them all).
var sinkAPIs = []kmsg.Request{
	kmsg.NewPtrApiVersionsRequest(),
	kmsg.NewPtrMetadataRequest(),
	kmsg.NewPtrProduceRequest(),
	kmsg.NewPtrCreateTopicsRequest(),
	kmsg.NewPtrInitProducerIDRequest(),
}

// sink is the handler. Offsets are kept per topic-partition so a client
// sees them increase as it would on a real broker.
type sink struct {
	partitions int32
	host       string
	port       int32

	mu      sync.Mutex
	offsets map[string][]int64
	pid     atomic.Int64

	// Produced counts the records and batch bytes acknowledged.
	records atomic.Int64
	bytes   atomic.Int64
}

// startSink listens on addr (host:port, port 0 for any) and serves until
// ctx ends or Close is called on the returned server.
func startSink(addr string, partitions int32) (*netio.Server, *sink, error) {
	if partitions < 1 {
		return nil, nil, fmt.Errorf("--partitions must be at least 1, got %d", partitions)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--listen %q: %v", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, nil, fmt.Errorf("--listen %q: bad port", addr)
	}
	s := &sink{partitions: partitions, offsets: map[string][]int64{}}
	cfg := netio.DefaultConfig()
	cfg.Listeners = []netio.Listener{{Name: "PLAINTEXT", SecurityProtocol: netio.PLAINTEXT, Host: host, Port: port}}
	cfg.Handler = s
	srv, err := netio.NewServer(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, nil, err
	}
	ta, ok := srv.Addr("PLAINTEXT").(*net.TCPAddr)
	if !ok {
		_ = srv.Close()
		return nil, nil, fmt.Errorf("sink: listener has no TCP address")
	}
	s.host, s.port = ta.IP.String(), int32(ta.Port)
	return srv, s, nil
}

// Serve implements netio.Handler.
func (s *sink) Serve(_ context.Context, req *netio.Request) netio.Response {
	var served kmsg.Request
	for _, r := range sinkAPIs {
		if r.Key() == req.APIKey {
			served = r
		}
	}
	if served == nil {
		return netio.CloseConnection()
	}
	if req.APIVersion < 0 || req.APIVersion > served.MaxVersion() {
		if req.APIKey == 18 {
			// KIP-511: an unknown ApiVersions version is answered in v0
			// with UNSUPPORTED_VERSION and the ranges we do serve.
			resp := s.apiVersions()
			resp.ErrorCode = kerr.UnsupportedVersion.Code
			resp.SetVersion(0)
			return netio.Bytes(resp.AppendTo(nil))
		}
		return netio.CloseConnection()
	}
	kreq := kmsg.RequestForKey(req.APIKey)
	kreq.SetVersion(req.APIVersion)
	if err := kreq.ReadFrom(req.Body); err != nil {
		return netio.CloseConnection()
	}
	var resp kmsg.Response
	switch r := kreq.(type) {
	case *kmsg.ApiVersionsRequest:
		resp = s.apiVersions()
	case *kmsg.MetadataRequest:
		resp = s.metadata(r)
	case *kmsg.ProduceRequest:
		resp = s.produce(r)
		if r.Acks == 0 {
			return netio.NoResponse()
		}
	case *kmsg.CreateTopicsRequest:
		resp = s.createTopics(r)
	case *kmsg.InitProducerIDRequest:
		out := kmsg.NewPtrInitProducerIDResponse()
		out.ProducerID = s.pid.Add(1)
		resp = out
	default:
		return netio.CloseConnection()
	}
	resp.SetVersion(req.APIVersion)
	return netio.Bytes(resp.AppendTo(nil))
}

func (s *sink) apiVersions() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	for _, r := range sinkAPIs {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = r.Key(), 0, r.MaxVersion()
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	return resp
}

// topicID derives a stable non-zero topic ID from the name, so Metadata and
// Produce by ID (v13+) agree.
func sinkTopicID(name string) [16]byte {
	var id [16]byte
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * 1099511628211
	}
	binary.BigEndian.PutUint64(id[:8], h|1)
	binary.BigEndian.PutUint64(id[8:], ^h)
	return id
}

func (s *sink) metadata(r *kmsg.MetadataRequest) *kmsg.MetadataResponse {
	resp := kmsg.NewPtrMetadataResponse()
	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = 0, s.host, s.port
	resp.Brokers = append(resp.Brokers, b)
	resp.ControllerID = 0
	cluster := "brokkr-bench-sink"
	resp.ClusterID = &cluster
	for _, rt := range r.Topics {
		if rt.Topic == nil || *rt.Topic == "" {
			continue
		}
		t := kmsg.NewMetadataResponseTopic()
		name := *rt.Topic
		t.Topic, t.TopicID = &name, sinkTopicID(name)
		for p := int32(0); p < s.partitions; p++ {
			mp := kmsg.NewMetadataResponseTopicPartition()
			mp.Partition, mp.Leader, mp.LeaderEpoch = p, 0, 0
			mp.Replicas, mp.ISR = []int32{0}, []int32{0}
			t.Partitions = append(t.Partitions, mp)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func (s *sink) createTopics(r *kmsg.CreateTopicsRequest) *kmsg.CreateTopicsResponse {
	resp := kmsg.NewPtrCreateTopicsResponse()
	for _, rt := range r.Topics {
		t := kmsg.NewCreateTopicsResponseTopic()
		t.Topic, t.TopicID = rt.Topic, sinkTopicID(rt.Topic)
		t.NumPartitions, t.ReplicationFactor = s.partitions, 1
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

// batchRecords returns the records and bytes of the v2 record batches in b
// (records count at byte 57 of each batch), stopping at a partial batch.
func batchRecords(b []byte) (records, bytes int64) {
	for len(b) >= 61 {
		n := 12 + int64(int32(binary.BigEndian.Uint32(b[8:12])))
		if n < 61 || n > int64(len(b)) {
			break
		}
		records += int64(int32(binary.BigEndian.Uint32(b[57:61])))
		bytes += n
		b = b[n:]
	}
	return records, bytes
}

func (s *sink) produce(r *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := kmsg.NewPtrProduceResponse()
	for _, rt := range r.Topics {
		t := kmsg.NewProduceResponseTopic()
		t.Topic, t.TopicID = rt.Topic, rt.TopicID
		key := rt.Topic
		if key == "" {
			key = fmt.Sprintf("%x", rt.TopicID)
		}
		for _, rp := range rt.Partitions {
			p := kmsg.NewProduceResponseTopicPartition()
			p.Partition = rp.Partition
			n, nb := batchRecords(rp.Records)
			s.mu.Lock()
			offs := s.offsets[key]
			if rp.Partition < 0 || rp.Partition >= s.partitions {
				p.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				if offs == nil {
					offs = make([]int64, s.partitions)
					s.offsets[key] = offs
				}
				p.BaseOffset = offs[rp.Partition]
				offs[rp.Partition] += n
			}
			s.mu.Unlock()
			if p.ErrorCode == 0 {
				s.records.Add(n)
				s.bytes.Add(nb)
			}
			p.LogAppendTime, p.LogStartOffset = -1, 0
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func newBenchSinkCmd() *cobra.Command {
	var (
		listen     string
		partitions int32
		cpuProfile string
	)
	cmd := &cobra.Command{
		Use:   "sink",
		Short: "Run a Kafka-protocol server that acknowledges every Produce and discards it (the client ceiling)",
		Long: `Runs a tiny Kafka-protocol server that answers ApiVersions, Metadata (every
requested topic with --partitions partitions), CreateTopics, InitProducerId and
Produce (success, increasing offsets), and keeps nothing. A producer against
it measures the client's own ceiling. It prints its address on stdout and runs
until SIGTERM or SIGINT.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srv, s, err := startSink(listen, partitions)
			if err != nil {
				return err
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "brokkr bench sink: listening on %s\n", net.JoinHostPort(s.host, strconv.Itoa(int(s.port))))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			err = srv.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "brokkr bench sink: acknowledged %d records, %d batch bytes\n", s.records.Load(), s.bytes.Load())
			return err
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "host:port to listen on (port 0: any free port)")
	cmd.Flags().Int32Var(&partitions, "partitions", 1, "partitions of every topic")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the sink to this file (where its CPU goes)")
	return cmd
}
