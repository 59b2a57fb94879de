package netio

import (
	"net"
	"reflect"
	"strings"
	"testing"
)

func TestParseListeners(t *testing.T) {
	got, err := ParseListeners("PLAINTEXT://127.0.0.1:9092, internal://:9093,IPV6://[::1]:0", map[string]SecurityProtocol{
		"PLAINTEXT": PLAINTEXT, "INTERNAL": PLAINTEXT, "IPV6": PLAINTEXT,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{
		{Name: "PLAINTEXT", SecurityProtocol: PLAINTEXT, Host: "127.0.0.1", Port: 9092},
		{Name: "INTERNAL", SecurityProtocol: PLAINTEXT, Host: "", Port: 9093},
		{Name: "IPV6", SecurityProtocol: PLAINTEXT, Host: "::1", Port: 0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	if got[2].String() != "IPV6://[::1]:0" || got[1].Address() != ":9093" {
		t.Fatalf("String %q Address %q", got[2].String(), got[1].Address())
	}
	// Default map: SSL parses (refused later, at NewServer).
	ls, err := ParseListeners("SSL://host:9094", nil)
	if err != nil || ls[0].SecurityProtocol != SSL {
		t.Fatalf("%+v %v", ls, err)
	}

	bad := map[string]string{
		"":                                "no listener",
		"localhost:9092":                  `"localhost:9092"`,
		"PLAINTEXT://localhost":           "missing port",
		"PLAINTEXT://localhost:99999":     "0..65535",
		"PLAINTEXT://localhost:x":         "0..65535",
		"FOO://localhost:9092":            "FOO has no security protocol",
		"PLAINTEXT://a:1,PLAINTEXT://b:2": "appears twice",
		"PLAINTEXT://a:1,BAD NAME://b:2":  `"BAD NAME://b:2"`,
		"PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9092": "already used",
	}
	for in, wantSub := range bad {
		_, err := ParseListeners(in, nil)
		if err == nil || !strings.Contains(err.Error(), wantSub) {
			t.Errorf("ParseListeners(%q) = %v, want error containing %q", in, err, wantSub)
		}
	}
}

func TestParseAdvertisedListeners(t *testing.T) {
	ls, err := ParseListeners("PLAINTEXT://:9092,SSL://0.0.0.0:9093", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Empty: same as listeners, wildcard hosts left for FillAdvertised.
	adv, err := ParseAdvertisedListeners("", ls, nil)
	if err != nil || len(adv) != 2 || adv[1].Host != "" {
		t.Fatalf("%+v %v", adv, err)
	}
	adv, err = ParseAdvertisedListeners("PLAINTEXT://broker1.example:19092", ls, nil)
	if err != nil || adv[0].Host != "broker1.example" || adv[0].Port != 19092 {
		t.Fatalf("%+v %v", adv, err)
	}
	for in, wantSub := range map[string]string{
		"PLAINTEXT://0.0.0.0:9092":        "non-routable",
		"PLAINTEXT://[::]:9092":           "non-routable",
		"SASL_SSL://host:9092":            "no listener named SASL_SSL",
		"PLAINTEXT://h:1,PLAINTEXT://h:2": "appears twice",
	} {
		_, err := ParseAdvertisedListeners(in, ls, nil)
		if err == nil || !strings.Contains(err.Error(), wantSub) || !strings.Contains(err.Error(), "advertised.listeners") {
			t.Errorf("%q: %v, want %q", in, err, wantSub)
		}
	}
	filled := FillAdvertised([]Listener{{Name: "PLAINTEXT", Port: 0}, {Name: "X", Host: "h", Port: 5}},
		map[string]net.Addr{"PLAINTEXT": &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4321}}, "myhost")
	if filled[0].Host != "myhost" || filled[0].Port != 4321 || filled[1].Host != "h" || filled[1].Port != 5 {
		t.Fatalf("%+v", filled)
	}
}

func TestParseSecurityProtocolMap(t *testing.T) {
	m, err := ParseSecurityProtocolMap("internal:PLAINTEXT, EXTERNAL:sasl_ssl")
	if err != nil || m["INTERNAL"] != PLAINTEXT || m["EXTERNAL"] != SASLSSL || len(m) != 2 {
		t.Fatalf("%v %v", m, err)
	}
	for _, in := range []string{"A", "A:TLS", ":PLAINTEXT", "A:PLAINTEXT,A:SSL"} {
		if _, err := ParseSecurityProtocolMap(in); err == nil || !strings.Contains(err.Error(), "listener.security.protocol.map") {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listeners = append(cfg.Listeners, Listener{Name: "SSL", SecurityProtocol: SSL, Port: 1})
	cfg.MaxRequestBytes = 0
	err := cfg.Validate()
	for _, want := range []string{"Handler is nil", "SSL is not supported yet", "socket.request.max.bytes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
}
