package brokkr

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/brokkr/brokkr/core/config"
)

// TestServerAdminMetrics embeds a broker with the admin listener on and
// checks that a bad request shows up in /metrics and that the health
// endpoints answer.
func TestServerAdminMetrics(t *testing.T) {
	cfg := config.DefaultConfig()
	cfg.Listeners = []string{"PLAINTEXT://127.0.0.1:0"}
	cfg.LogDirs = []string{t.TempDir()}
	cfg.AdminListen = "127.0.0.1:0"
	s := &Server{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })

	// A frame with API key 999 closes that connection and is counted.
	c, err := net.Dial("tcp", s.Addr("PLAINTEXT").String())
	if err != nil {
		t.Fatal(err)
	}
	frame := binary.BigEndian.AppendUint32(nil, 10)
	frame = binary.BigEndian.AppendUint16(frame, 999)
	frame = binary.BigEndian.AppendUint16(frame, 0)
	frame = binary.BigEndian.AppendUint32(frame, 7)
	frame = binary.BigEndian.AppendUint16(frame, 0xffff)
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 16)); err != io.EOF {
		t.Fatalf("after an unknown API key the broker answered %d bytes (err %v), want the connection closed", n, err)
	}
	c.Close()

	base := "http://" + s.AdminAddr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	if code, _ := get("/livez"); code != 200 {
		t.Errorf("/livez: %d", code)
	}
	_, body := get("/metrics")
	for _, want := range []string{
		"brokkr_network_unknown_api_keys_total 1",
		"brokkr_network_connections_accepted_total 1",
		"kafka_server_kafkaserver_brokerstate 3",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "etcd_") {
		t.Error("/metrics shows etcd's global-registry metrics; the admin registry must be private")
	}
}
