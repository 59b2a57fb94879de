// Package pluginpb is the wire protocol between the broker's plugin host
// (plugins/host) and a policy plugin process (plugins/sdk): the go-plugin
// handshake, the gRPC services generated from policy.proto (regenerate with
// scripts/genproto.sh; the generated files are committed), conversions
// between the plugins types and their messages, and the plugin-side servers.
//
// Only plugins/host and plugins/sdk import it; plugin authors see the sdk.
package pluginpb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/brokkr/brokkr/plugins"
)

// ProtocolVersion is the plugin protocol version. A plugin built against
// another version is refused at the handshake.
const ProtocolVersion = 1

// Handshake is what host and plugin must agree on before they talk. The
// magic cookie is not a secret: it only stops a user from running a plugin
// binary by hand (go-plugin then prints a friendly message).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "BROKKR_PLUGIN",
	MagicCookieValue: "6f1d3c2a9b8e4d7f-brokkr-policy",
}

// Plugin names in go-plugin's plugin map. A binary serves one or both.
const (
	NameRetention  = "retention"
	NameCompaction = "compaction"
)

// MaxMessageBytes bounds one gRPC message in either direction (host and
// plugin set it alike). The host chunks compaction batches to ChunkBytes so
// that an ordinary call stays well below gRPC's default 4 MiB.
const (
	MaxMessageBytes = 16 << 20
	ChunkBytes      = 3 << 20
)

// MaxOpenPasses bounds the compaction passes a plugin keeps open at once; a
// Begin beyond it fails (ResourceExhausted) rather than growing without end
// when a host forgets to Close.
const MaxOpenPasses = 1024

// Plugin is the go-plugin plugin for both kinds. On the plugin side it
// serves Retention or Compaction (whichever Kind names); on the host side
// GRPCClient hands back the *grpc.ClientConn, from which the host builds
// its own clients.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	Kind       string // NameRetention or NameCompaction
	Retention  plugins.RetentionPolicy
	Compaction plugins.CompactionPolicy
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	switch {
	case p.Kind == NameRetention && p.Retention != nil:
		RegisterRetentionServer(s, &retentionServer{p: p.Retention})
	case p.Kind == NameCompaction && p.Compaction != nil:
		RegisterCompactionServer(s, &compactionServer{p: p.Compaction, passes: map[uint64]*openPass{}})
	default:
		return fmt.Errorf("pluginpb: plugin %q has no policy to serve", p.Kind)
	}
	return nil
}

// GRPCClient implements plugin.GRPCPlugin: it returns the connection.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}

// Flow control and buffers: a batch of a few MiB should cross the local
// socket without waiting for window updates (each is a round trip between
// two processes, costly on a busy machine).
const (
	windowBytes = 16 << 20
	bufferBytes = 256 << 10
)

// GRPCServerOptions are the options a plugin's gRPC server runs with.
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.InitialWindowSize(windowBytes), grpc.InitialConnWindowSize(windowBytes),
		grpc.ReadBufferSize(bufferBytes), grpc.WriteBufferSize(bufferBytes)}
}

// GRPCDialOptions are the options the host dials a plugin with.
func GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithInitialWindowSize(windowBytes), grpc.WithInitialConnWindowSize(windowBytes),
		grpc.WithReadBufferSize(bufferBytes), grpc.WithWriteBufferSize(bufferBytes)}
}

// A policy's own error crosses the wire as FailedPrecondition (the host
// reports it as plugins.ErrPolicyFailed without restarting the plugin); a
// panic inside the policy as Internal (the host counts a fault and restarts
// the plugin).
func policyError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.FailedPrecondition, err.Error())
}

func guard(what string, err *error) {
	if r := recover(); r != nil {
		*err = status.Errorf(codes.Internal, "policy panicked in %s: %v", what, r)
	}
}

type retentionServer struct {
	UnimplementedRetentionServer
	p plugins.RetentionPolicy
}

func (s *retentionServer) Info(context.Context, *Empty) (_ *PolicyInfo, err error) {
	defer guard("Info", &err)
	return InfoToPB(s.p.Info()), nil
}

func (s *retentionServer) Decide(ctx context.Context, in *RetentionInput) (_ *RetentionDecision, err error) {
	defer guard("Decide", &err)
	d, err := s.p.Decide(ctx, RetentionInputFromPB(in))
	if err != nil {
		return nil, policyError(err)
	}
	return RetentionDecisionToPB(d), nil
}

type openPass struct {
	mu   sync.Mutex
	pass plugins.CompactionPass
}

type compactionServer struct {
	UnimplementedCompactionServer
	p plugins.CompactionPolicy

	mu     sync.Mutex
	next   uint64
	passes map[uint64]*openPass
}

func (s *compactionServer) Info(context.Context, *Empty) (_ *PolicyInfo, err error) {
	defer guard("Info", &err)
	return InfoToPB(s.p.Info()), nil
}

func (s *compactionServer) Begin(ctx context.Context, in *CompactionParams) (_ *Pass, err error) {
	defer guard("Begin", &err)
	s.mu.Lock()
	n := len(s.passes)
	s.mu.Unlock()
	if n >= MaxOpenPasses {
		return nil, status.Errorf(codes.ResourceExhausted, "%d compaction passes already open", n)
	}
	pass, err := s.p.Begin(ctx, CompactionParamsFromPB(in))
	if err != nil {
		return nil, policyError(err)
	}
	if pass == nil {
		return nil, status.Error(codes.Internal, "policy returned a nil pass")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.passes[s.next] = &openPass{pass: pass}
	return &Pass{PassId: s.next}, nil
}

func (s *compactionServer) pass(id uint64) (*openPass, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.passes[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no open compaction pass %d", id)
	}
	return p, nil
}

func (s *compactionServer) Scan(stream grpc.ClientStreamingServer[Batch, Empty]) (err error) {
	defer guard("Scan", &err)
	ctx := stream.Context()
	for {
		b, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&Empty{})
		}
		if err != nil {
			return err
		}
		p, err := s.pass(b.PassId)
		if err != nil {
			return err
		}
		recs, err := RecordsFromPB(b.GetRecords())
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		p.mu.Lock()
		err = p.pass.Scan(ctx, recs)
		p.mu.Unlock()
		if err != nil {
			return policyError(err)
		}
	}
}

func (s *compactionServer) Survivors(ctx context.Context, b *Batch) (_ *SurvivorOffsets, err error) {
	defer guard("Survivors", &err)
	p, err := s.pass(b.PassId)
	if err != nil {
		return nil, err
	}
	recs, err := RecordsFromPB(b.GetRecords())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	offs, err := p.pass.Survivors(ctx, recs)
	if err != nil {
		return nil, policyError(err)
	}
	return &SurvivorOffsets{Offsets: offs}, nil
}

func (s *compactionServer) Close(_ context.Context, in *Pass) (_ *Empty, err error) {
	defer guard("Close", &err)
	s.mu.Lock()
	p, ok := s.passes[in.PassId]
	delete(s.passes, in.PassId)
	s.mu.Unlock()
	if !ok {
		return &Empty{}, nil // closing twice is harmless
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.pass.Close(); err != nil {
		return nil, policyError(err)
	}
	return &Empty{}, nil
}

// InfoToPB converts a plugins.Info.
func InfoToPB(i plugins.Info) *PolicyInfo {
	return &PolicyInfo{Name: i.Name, NeedsValues: i.NeedsValues}
}

// RetentionInputToPB converts a plugins.RetentionInput.
func RetentionInputToPB(in plugins.RetentionInput) *RetentionInput {
	segs := make([]*Segment, len(in.Segments))
	for i, s := range in.Segments {
		segs[i] = &Segment{BaseOffset: s.BaseOffset, LastOffset: s.LastOffset, SizeBytes: s.SizeBytes,
			MaxTimestampMs: s.MaxTimestampMs, CreatedMs: s.CreatedMs, Active: s.Active}
	}
	return &RetentionInput{Topic: in.Topic, Partition: in.Partition, Segments: segs, Config: in.Config,
		NowMs: in.NowMs, HighWatermark: in.HighWatermark, LogStartOffset: in.LogStartOffset,
		MinCommittedOffset: in.MinCommittedOffset, DiskUsedBytes: in.DiskUsedBytes, DiskCapacityBytes: in.DiskCapacityBytes}
}

// RetentionInputFromPB converts back; a nil segment becomes a zero segment
// (the host's checks refuse such input anyway).
func RetentionInputFromPB(in *RetentionInput) plugins.RetentionInput {
	segs := make([]plugins.Segment, len(in.GetSegments()))
	for i, s := range in.GetSegments() {
		segs[i] = plugins.Segment{BaseOffset: s.GetBaseOffset(), LastOffset: s.GetLastOffset(), SizeBytes: s.GetSizeBytes(),
			MaxTimestampMs: s.GetMaxTimestampMs(), CreatedMs: s.GetCreatedMs(), Active: s.GetActive()}
	}
	cfg := in.GetConfig()
	if cfg == nil {
		cfg = map[string]string{}
	}
	return plugins.RetentionInput{Topic: in.GetTopic(), Partition: in.GetPartition(), Segments: segs, Config: cfg,
		NowMs: in.GetNowMs(), HighWatermark: in.GetHighWatermark(), LogStartOffset: in.GetLogStartOffset(),
		MinCommittedOffset: in.GetMinCommittedOffset(), DiskUsedBytes: in.GetDiskUsedBytes(), DiskCapacityBytes: in.GetDiskCapacityBytes()}
}

// RetentionDecisionToPB converts a plugins.RetentionDecision.
func RetentionDecisionToPB(d plugins.RetentionDecision) *RetentionDecision {
	return &RetentionDecision{LogStartOffset: d.LogStartOffset, Reason: d.Reason}
}

// RetentionDecisionFromPB converts back.
func RetentionDecisionFromPB(d *RetentionDecision) plugins.RetentionDecision {
	return plugins.RetentionDecision{LogStartOffset: d.GetLogStartOffset(), Reason: d.GetReason()}
}

// CompactionParamsToPB converts a plugins.CompactionParams.
func CompactionParamsToPB(p plugins.CompactionParams) *CompactionParams {
	return &CompactionParams{Topic: p.Topic, Partition: p.Partition, Config: p.Config, NowMs: p.NowMs}
}

// CompactionParamsFromPB converts back.
func CompactionParamsFromPB(p *CompactionParams) plugins.CompactionParams {
	cfg := p.GetConfig()
	if cfg == nil {
		cfg = map[string]string{}
	}
	return plugins.CompactionParams{Topic: p.GetTopic(), Partition: p.GetPartition(), Config: cfg, NowMs: p.GetNowMs()}
}

const flagTombstone = 1

// RecordsToPB converts records to columns; values are sent only when
// withValues (the policy's Info.NeedsValues) and the record is not a
// tombstone.
func RecordsToPB(recs []plugins.Record, withValues bool) *Records {
	n := len(recs)
	out := &Records{Offsets: make([]int64, n), TimestampsMs: make([]int64, n), Flags: make([]uint32, n), KeyLengths: make([]int32, n)}
	keyBytes, valBytes, hdrs := 0, 0, 0
	for _, r := range recs {
		keyBytes += len(r.Key)
		if withValues && !r.Tombstone {
			valBytes += len(r.Value)
		}
		hdrs += len(r.Headers)
	}
	out.KeyData = make([]byte, 0, keyBytes)
	if withValues {
		out.ValueLengths = make([]int32, n)
		out.ValueData = make([]byte, 0, valBytes)
	}
	if hdrs > 0 {
		out.HeaderCounts = make([]uint32, n)
		out.Headers = make([]*Header, 0, hdrs)
	}
	for i, r := range recs {
		out.Offsets[i], out.TimestampsMs[i] = r.Offset, r.TimestampMs
		if r.Tombstone {
			out.Flags[i] = flagTombstone
		}
		if r.Key == nil {
			out.KeyLengths[i] = -1
		} else {
			out.KeyLengths[i] = int32(len(r.Key))
			out.KeyData = append(out.KeyData, r.Key...)
		}
		if withValues {
			if r.Tombstone || r.Value == nil {
				out.ValueLengths[i] = -1
			} else {
				out.ValueLengths[i] = int32(len(r.Value))
				out.ValueData = append(out.ValueData, r.Value...)
			}
		}
		if hdrs > 0 {
			out.HeaderCounts[i] = uint32(len(r.Headers))
			for _, h := range r.Headers {
				out.Headers = append(out.Headers, &Header{Key: h.Key, Value: h.Value, NullValue: h.Value == nil})
			}
		}
	}
	return out
}

// ErrBadBatch reports columns that do not fit together.
var ErrBadBatch = errors.New("pluginpb: malformed record batch")

// RecordsFromPB converts columns back, restoring nil (null) against empty
// keys, values and header values. Keys and values share one backing array
// per batch. Columns that do not fit together are ErrBadBatch.
func RecordsFromPB(in *Records) ([]plugins.Record, error) {
	n := len(in.GetOffsets())
	if len(in.GetTimestampsMs()) != n || len(in.GetFlags()) != n || len(in.GetKeyLengths()) != n ||
		(len(in.GetValueLengths()) != 0 && len(in.GetValueLengths()) != n) ||
		(len(in.GetHeaderCounts()) != 0 && len(in.GetHeaderCounts()) != n) {
		return nil, fmt.Errorf("%w: column lengths differ", ErrBadBatch)
	}
	out := make([]plugins.Record, n)
	keys, vals, hdrs := in.GetKeyData(), in.GetValueData(), in.GetHeaders()
	for i := range out {
		r := &out[i]
		r.Offset, r.TimestampMs, r.Tombstone = in.Offsets[i], in.TimestampsMs[i], in.Flags[i]&flagTombstone != 0
		var err error
		if r.Key, keys, err = take(keys, in.KeyLengths[i]); err != nil {
			return nil, fmt.Errorf("%w: record %d key: %v", ErrBadBatch, i, err)
		}
		if len(in.ValueLengths) == n {
			if r.Value, vals, err = take(vals, in.ValueLengths[i]); err != nil {
				return nil, fmt.Errorf("%w: record %d value: %v", ErrBadBatch, i, err)
			}
			if r.Tombstone {
				r.Value = nil
			}
		}
		if len(in.HeaderCounts) == n && in.HeaderCounts[i] > 0 {
			c := int(in.HeaderCounts[i])
			if c > len(hdrs) {
				return nil, fmt.Errorf("%w: record %d: %d headers, %d left", ErrBadBatch, i, c, len(hdrs))
			}
			r.Headers = make([]plugins.Header, c)
			for j, h := range hdrs[:c] {
				r.Headers[j] = plugins.Header{Key: h.GetKey()}
				if !h.GetNullValue() {
					r.Headers[j].Value = nonNil(h.GetValue())
				}
			}
			hdrs = hdrs[c:]
		}
	}
	if len(keys) != 0 || len(vals) != 0 || len(hdrs) != 0 {
		return nil, fmt.Errorf("%w: %d key bytes, %d value bytes, %d headers left over", ErrBadBatch, len(keys), len(vals), len(hdrs))
	}
	return out, nil
}

// take cuts the next n bytes (n = -1: nil) off data, capacity-limited so
// that an append by the policy cannot overwrite the next record's bytes.
func take(data []byte, n int32) (field, rest []byte, err error) {
	switch {
	case n == -1:
		return nil, data, nil
	case n < 0 || int(n) > len(data):
		return nil, nil, fmt.Errorf("length %d with %d bytes left", n, len(data))
	}
	return nonNil(data[:n:n]), data[n:], nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// RecordWireBytes estimates the encoded size of one record (an upper bound
// good enough for chunking).
func RecordWireBytes(r plugins.Record, withValues bool) int {
	n := 40 + len(r.Key)
	if withValues && !r.Tombstone {
		n += len(r.Value)
	}
	for _, h := range r.Headers {
		n += 16 + len(h.Key) + len(h.Value)
	}
	return n
}

// Chunks splits a batch into consecutive chunks of at most limit estimated
// wire bytes each (a single larger record forms its own chunk). The split
// depends only on the records, so the same batch always splits the same way.
func Chunks(batch []plugins.Record, withValues bool, limit int) [][]plugins.Record {
	var out [][]plugins.Record
	start, size := 0, 0
	for i, r := range batch {
		n := RecordWireBytes(r, withValues)
		if i > start && size+n > limit {
			out = append(out, batch[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(batch) || len(batch) == 0 {
		out = append(out, batch[start:])
	}
	return out
}
