package broker

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzDecodeRequest feeds arbitrary (key, version, body) triples to the
// broker's request decoder: it must never panic, and it must either parse,
// or say which of the three refusals applies. Seeds: a default request of
// every served API at its min and max version, and the bodies of frames a
// real franz-go client wrote (netio/testdata/fuzz/FuzzRequestFrame).
func FuzzDecodeRequest(f *testing.F) {
	for key, a := range apis {
		for _, v := range []int16{a.min, a.max} {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			f.Add(key, v, req.AppendTo(nil))
		}
	}
	for _, c := range capturedFrames() {
		f.Add(c.key, c.version, c.body)
	}
	f.Fuzz(func(t *testing.T, key, version int16, body []byte) {
		a, req, early, err := decodeRequest(key, version, body)
		switch {
		case err == nil:
			if a == nil || req == nil || req.Key() != key {
				t.Fatalf("parsed without an api or request: %v %v", a, req)
			}
		case errors.Is(err, errUnknownKey), errors.Is(err, errUnsupportedVersion), errors.Is(err, errMalformed):
			if early != nil && key != 18 {
				t.Fatalf("an early answer for key %d", key)
			}
		default:
			t.Fatalf("undocumented error %v", err)
		}
	})
}

// capturedFrames yields (key, version, body) of the real-client frames
// netio's fuzz corpus holds, parsing only what is needed: the header v1/v2
// prefix (size, key, version, correlation id, client id).
type captured struct {
	key, version int16
	body         []byte
}

func capturedFrames() []captured {
	var out []captured
	{
		dir := filepath.Join("..", "..", "netio", "testdata", "fuzz", "FuzzRequestFrame")
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			lines := strings.Split(string(data), "\n")
			if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
				continue
			}
			raw, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
			if err != nil || len(raw) < 14 {
				continue
			}
			b := []byte(raw)[4:]
			key := int16(binary.BigEndian.Uint16(b))
			ver := int16(binary.BigEndian.Uint16(b[2:]))
			n := int(int16(binary.BigEndian.Uint16(b[8:])))
			rest := b[10:]
			if n > 0 && n <= len(rest) {
				rest = rest[n:]
			}
			if flex, _ := isFlexible(key, ver); flex && len(rest) > 0 {
				rest = rest[1:] // empty header tag section, as the client wrote it
			}
			out = append(out, captured{key, ver, rest})
		}
	}
	return out
}

func isFlexible(key, version int16) (bool, bool) {
	r := kmsg.RequestForKey(key)
	if r == nil {
		return false, false
	}
	r.SetVersion(version)
	return r.IsFlexible(), true
}

// TestCapturedClientFramesDecode: the frames a real client wrote parse, and
// the fuzz target really is seeded with them.
func TestCapturedClientFramesDecode(t *testing.T) {
	cs := capturedFrames()
	if len(cs) < 3 {
		t.Fatalf("found %d captured frames in netio's corpus, want at least 3", len(cs))
	}
	for _, c := range cs {
		_, req, early, err := decodeRequest(c.key, c.version, c.body)
		if c.key == 18 && c.version > apiVersionsMax {
			if early == nil {
				t.Errorf("ApiVersions v%d: no KIP-511 answer", c.version)
			}
			continue
		}
		if a := apis[c.key]; a != nil && (c.version < a.min || c.version > a.max) {
			if !errors.Is(err, errUnsupportedVersion) {
				t.Errorf("key %d v%d is outside the served range but got %v", c.key, c.version, err)
			}
			continue
		}
		if err != nil || req == nil {
			t.Errorf("key %d v%d from a real client does not decode: %v", c.key, c.version, err)
		}
	}
}
