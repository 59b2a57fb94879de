package broker

import (
	"testing"

	"github.com/brokkr/brokkr/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestVersionFloors checks the floors librdkafka depends on and that every
// advertised API, at its lowest and highest advertised version, gets an
// answer that decodes, never a closed connection.
func TestVersionFloors(t *testing.T) {
	b := testbroker.Start(t)
	adv := apiVersions(t, b.Addr)
	for _, f := range []struct {
		key   int16
		floor int16
	}{{0, 0}, {1, 4}, {2, 1}, {3, 0}, {22, 0}} {
		r, ok := adv[f.key]
		if !ok {
			t.Errorf("%s (key %d) is not advertised", kmsg.NameForKey(f.key), f.key)
			continue
		}
		if r[0] != f.floor {
			t.Errorf("%s advertised from v%d, want from v%d", kmsg.NameForKey(f.key), r[0], f.floor)
		}
	}
	// Never advertise what kmsg (and so the broker) cannot parse.
	for key, r := range adv {
		req := kmsg.RequestForKey(key)
		if req == nil {
			t.Errorf("advertised key %d is unknown to kmsg", key)
			continue
		}
		if r[0] > r[1] || r[1] > req.MaxVersion() {
			t.Errorf("%s advertised v%d-v%d; kmsg knows up to v%d", kmsg.NameForKey(key), r[0], r[1], req.MaxVersion())
		}
	}

	checked := 0
	for key, r := range adv {
		for _, v := range []int16{r[0], r[1]} {
			checked++
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			switch q := req.(type) {
			case *kmsg.ProduceRequest:
				q.Acks = -1 // acks=0 would get no answer by design
			case *kmsg.ApiVersionsRequest:
				q.ClientSoftwareName, q.ClientSoftwareVersion = "brokkr-tests", "1"
			}
			rc := dial(t, b.Addr)
			if _, err := rc.roundTrip(req); err != nil {
				t.Errorf("%s v%d (advertised v%d-v%d) with a default body: %v", kmsg.NameForKey(key), v, r[0], r[1], err)
			}
		}
	}
	t.Logf("%d advertised APIs answered at their lowest and highest versions (%d requests)", len(adv), checked)
	assertNoPanic(t, b)
}

// TestProduceRefusals: Produce v0-v2 (message format v0/v1) and invalid
// acks are answered per partition with the right error, nothing appended.
func TestProduceRefusals(t *testing.T) {
	b := testbroker.Start(t)
	createTopic(t, b.Addr, "refusals", 1, nil)
	rc := dial(t, b.Addr)
	batch := recordBatch(-1, -1, -1, "x")
	for v := int16(0); v <= 2; v++ {
		p := onlyPartition(t, rc.mustRoundTrip(produceReq(v, 1, "refusals", 0, batch)))
		if p.ErrorCode != kerr.UnsupportedVersion.Code {
			t.Errorf("Produce v%d: error %d, want UNSUPPORTED_VERSION (%d)", v, p.ErrorCode, kerr.UnsupportedVersion.Code)
		}
	}
	for _, acks := range []int16{2, -2, 3} {
		p := onlyPartition(t, rc.mustRoundTrip(produceReq(7, acks, "refusals", 0, batch)))
		if p.ErrorCode != kerr.InvalidRequiredAcks.Code {
			t.Errorf("Produce v7 acks=%d: error %d, want INVALID_REQUIRED_ACKS (%d)", acks, p.ErrorCode, kerr.InvalidRequiredAcks.Code)
		}
	}
	if leo := endOffset(t, b.Addr, "refusals", 0); leo != 0 {
		t.Errorf("refused produces appended: end offset %d, want 0", leo)
	}
	// The same connection still produces with a valid request.
	p := onlyPartition(t, rc.mustRoundTrip(produceReq(7, 1, "refusals", 0, batch)))
	if p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Errorf("valid Produce v7 after the refusals: error %d base offset %d, want 0 and 0", p.ErrorCode, p.BaseOffset)
	}
	if leo := endOffset(t, b.Addr, "refusals", 0); leo != 1 {
		t.Errorf("end offset %d after one record, want 1", leo)
	}
}
