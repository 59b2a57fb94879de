package zk

import (
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/coord"
)

// FuzzParseConnect: no input panics, and what is accepted validates.
func FuzzParseConnect(f *testing.F) {
	for _, s := range []string{"zk1:2181", "zk://a:1,b:2/chroot", "a:1/", "[::1]:2181/x/y", "", "a:99999", "a:1/a//b", "a:1/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		servers, chroot, err := ParseConnect(s)
		if err != nil {
			return
		}
		cfg := DefaultConfig()
		cfg.Servers, cfg.Chroot = servers, chroot
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParseConnect(%q) accepted %v %q but Validate says %v", s, servers, chroot, err)
		}
	})
}

func TestBrokerJSON(t *testing.T) {
	in := coord.BrokerInfo{ID: 7, Rack: "eu-1a", Endpoints: []string{"INTERNAL://10.0.0.7:9093", "PLAINTEXT://h7:9092"}, Meta: map[string]string{"x": "y"}}
	raw, err := encodeBroker(in, time.UnixMilli(1700000000000))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"host":"h7"`, `"port":9092`, `"timestamp":"1700000000000"`, `"INTERNAL":"PLAINTEXT"`, `"features":{}`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("%s lacks %s", raw, want)
		}
	}
	out, err := decodeBroker("/brokers/ids/7", raw)
	if err != nil || out.ID != 7 || out.Rack != "eu-1a" || len(out.Endpoints) != 2 || out.Meta["x"] != "y" {
		t.Fatalf("round trip = %+v %v", out, err)
	}
	// Without a PLAINTEXT listener, host is null and port -1, as Kafka.
	raw, _ = encodeBroker(coord.BrokerInfo{ID: 1, Endpoints: []string{"SSL://h:9093"}}, time.Now())
	if !strings.Contains(string(raw), `"host":null`) || !strings.Contains(string(raw), `"port":-1`) || !strings.Contains(string(raw), `"rack":null`) {
		t.Fatalf("no-PLAINTEXT JSON = %s", raw)
	}
	// A registration written by an old Kafka (no endpoints) still reads.
	out, err = decodeBroker("/brokers/ids/3", []byte(`{"jmx_port":-1,"host":"old","port":9092,"version":1}`))
	if err != nil || len(out.Endpoints) != 1 || out.Endpoints[0] != "PLAINTEXT://old:9092" {
		t.Fatalf("v1 znode = %+v %v", out, err)
	}
	for _, bad := range []string{"nohost", "PLAINTEXT://h", "PLAINTEXT://h:x", "://h:1"} {
		if _, err := encodeBroker(coord.BrokerInfo{ID: 1, Endpoints: []string{bad}}, time.Now()); err == nil {
			t.Errorf("endpoint %q accepted", bad)
		}
	}
	if _, err := decodeBroker("/brokers/ids/x", raw); err == nil {
		t.Errorf("non-numeric id accepted")
	}
	if _, err := decodeBroker("/brokers/ids/1", []byte("{")); err == nil {
		t.Errorf("bad JSON accepted")
	}
}
