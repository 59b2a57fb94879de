package netio

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// SecurityProtocol is a Kafka security protocol name.
type SecurityProtocol string

// Kafka's security protocols. Only PLAINTEXT is served today; the others
// parse (so configs name them correctly) and are refused at Listen.
const (
	PLAINTEXT     SecurityProtocol = "PLAINTEXT"
	SSL           SecurityProtocol = "SSL"
	SASLPlaintext SecurityProtocol = "SASL_PLAINTEXT"
	SASLSSL       SecurityProtocol = "SASL_SSL"
)

// DefaultSecurityProtocolMap is Kafka's listener.security.protocol.map
// default: each protocol name is also a listener name.
func DefaultSecurityProtocolMap() map[string]SecurityProtocol {
	return map[string]SecurityProtocol{
		"PLAINTEXT": PLAINTEXT, "SSL": SSL,
		"SASL_PLAINTEXT": SASLPlaintext, "SASL_SSL": SASLSSL,
	}
}

func validProtocol(p SecurityProtocol) bool {
	switch p {
	case PLAINTEXT, SSL, SASLPlaintext, SASLSSL:
		return true
	}
	return false
}

// Listener is one entry of `listeners` or `advertised.listeners`:
// NAME://host:port. An empty Host in `listeners` means all interfaces.
type Listener struct {
	Name             string // upper case, e.g. PLAINTEXT, INTERNAL
	SecurityProtocol SecurityProtocol
	Host             string // without brackets for IPv6; "" = all interfaces
	Port             int    // 0 = any free port (tests)
}

// Address is the host:port form for net.Listen / net.Dial.
func (l Listener) Address() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// String is the NAME://host:port form Kafka uses.
func (l Listener) String() string { return l.Name + "://" + l.Address() }

// ParseSecurityProtocolMap parses listener.security.protocol.map
// ("INTERNAL:PLAINTEXT,EXTERNAL:SSL"). An empty value gives Kafka's default.
func ParseSecurityProtocolMap(value string) (map[string]SecurityProtocol, error) {
	if strings.TrimSpace(value) == "" {
		return DefaultSecurityProtocolMap(), nil
	}
	m := map[string]SecurityProtocol{}
	for _, entry := range strings.Split(value, ",") {
		entry = strings.TrimSpace(entry)
		name, proto, ok := strings.Cut(entry, ":")
		name = strings.ToUpper(strings.TrimSpace(name))
		p := SecurityProtocol(strings.ToUpper(strings.TrimSpace(proto)))
		switch {
		case !ok || name == "":
			return nil, fmt.Errorf("listener.security.protocol.map entry %q: want NAME:PROTOCOL", entry)
		case !validListenerName(name):
			return nil, fmt.Errorf("listener.security.protocol.map entry %q: listener name may use only letters, digits, '_' and '-'", entry)
		case !validProtocol(p):
			return nil, fmt.Errorf("listener.security.protocol.map entry %q: unknown security protocol %q (want PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)", entry, proto)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("listener.security.protocol.map entry %q: listener %s mapped twice", entry, name)
		}
		m[name] = p
	}
	return m, nil
}

func validListenerName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parseListenerList parses a comma-separated NAME://host:port list; key is
// the config key named in errors.
func parseListenerList(key, value string, protocols map[string]SecurityProtocol) ([]Listener, error) {
	if protocols == nil {
		protocols = DefaultSecurityProtocolMap()
	}
	var out []Listener
	seenName := map[string]bool{}
	for _, raw := range strings.Split(value, ",") {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			continue
		}
		name, hostport, ok := strings.Cut(entry, "://")
		if !ok {
			return nil, fmt.Errorf("%s entry %q: want NAME://host:port, e.g. PLAINTEXT://localhost:9092", key, entry)
		}
		name = strings.ToUpper(name)
		if !validListenerName(name) {
			return nil, fmt.Errorf("%s entry %q: listener name %q may use only letters, digits, '_' and '-'", key, entry, name)
		}
		host, portStr, err := net.SplitHostPort(hostport)
		if err != nil {
			return nil, fmt.Errorf("%s entry %q: %v", key, entry, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < 0 || port > 65535 {
			return nil, fmt.Errorf("%s entry %q: port %q is not a number in 0..65535", key, entry, portStr)
		}
		if strings.ContainsAny(host, " /") {
			return nil, fmt.Errorf("%s entry %q: bad host %q", key, entry, host)
		}
		proto, ok := protocols[name]
		if !ok {
			return nil, fmt.Errorf("%s entry %q: listener name %s has no security protocol; add %s:PROTOCOL to listener.security.protocol.map", key, entry, name, name)
		}
		if seenName[name] {
			return nil, fmt.Errorf("%s entry %q: listener name %s appears twice", key, entry, name)
		}
		seenName[name] = true
		out = append(out, Listener{Name: name, SecurityProtocol: proto, Host: host, Port: port})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no listener in %q", key, value)
	}
	return out, nil
}

// ParseListeners parses Kafka's `listeners` value, e.g.
// "PLAINTEXT://127.0.0.1:9092,INTERNAL://:9093" ("NAME://:port" and
// "NAME://0.0.0.0:port" listen on all interfaces; port 0 picks a free
// port). protocols maps listener names to security protocols (nil means
// Kafka's default map). Errors name the bad entry.
func ParseListeners(value string, protocols map[string]SecurityProtocol) ([]Listener, error) {
	ls, err := parseListenerList("listeners", value, protocols)
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for _, l := range ls {
		if l.Port == 0 {
			continue
		}
		k := l.Address()
		if prev, dup := seen[k]; dup {
			return nil, fmt.Errorf("listeners entry %q: %s is already used by listener %s", l.String(), k, prev)
		}
		seen[k] = l.Name
	}
	return ls, nil
}

// ParseAdvertisedListeners parses `advertised.listeners`. An empty value
// means "the same as listeners" (Kafka's default). Every name must be one
// of the listeners' names, and no entry may advertise 0.0.0.0 or ::, which
// a client cannot connect to. An empty host is kept: FillAdvertised
// replaces it with the host name.
func ParseAdvertisedListeners(value string, listeners []Listener, protocols map[string]SecurityProtocol) ([]Listener, error) {
	if strings.TrimSpace(value) == "" {
		out := make([]Listener, len(listeners))
		copy(out, listeners)
		for i := range out {
			if isAnyHost(out[i].Host) {
				out[i].Host = ""
			}
		}
		return out, nil
	}
	adv, err := parseListenerList("advertised.listeners", value, protocols)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, l := range listeners {
		names[l.Name] = true
	}
	for _, a := range adv {
		if isAnyHost(a.Host) && a.Host != "" {
			return nil, fmt.Errorf("advertised.listeners entry %q: %s is a non-routable meta-address; advertise a host clients can reach", a.String(), a.Host)
		}
		if !names[a.Name] {
			return nil, fmt.Errorf("advertised.listeners entry %q: no listener named %s in listeners", a.String(), a.Name)
		}
	}
	return adv, nil
}

func isAnyHost(h string) bool {
	if h == "" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsUnspecified()
}

// FillAdvertised completes advertised listeners once the real listeners
// are bound: an empty host becomes hostname, and port 0 becomes the port
// the listener of the same name actually bound (bound maps listener name to
// address, as Server.Addrs returns).
func FillAdvertised(adv []Listener, bound map[string]net.Addr, hostname string) []Listener {
	out := make([]Listener, len(adv))
	copy(out, adv)
	for i := range out {
		if out[i].Host == "" {
			out[i].Host = hostname
		}
		if out[i].Port == 0 {
			if ta, ok := bound[out[i].Name].(*net.TCPAddr); ok {
				out[i].Port = ta.Port
			}
		}
	}
	return out
}
