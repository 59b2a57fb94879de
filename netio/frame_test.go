package netio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Every known key at every version kmsg knows: frames written by kmsg's
// own RequestFormatter (an independent encoder) decode to the same header
// and the exact body kmsg appended.
func TestParseRequestHeaderMatchesKmsg(t *testing.T) {
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("brokkr-test"))
	checked := 0
	for k := int16(0); k <= kmsg.MaxKey; k++ {
		req := kmsg.RequestForKey(k)
		if req == nil {
			if KnownAPIKey(k) {
				t.Errorf("key %d: kmsg does not know it but KnownAPIKey says yes", k)
			}
			continue
		}
		for v := int16(0); v <= req.MaxVersion(); v++ {
			if k == 7 && v == 0 {
				continue // kmsg's formatter writes no body (nor size) for ControlledShutdown v0
			}
			req.SetVersion(v)
			full := f.AppendRequest(nil, req, int32(1000+v))
			h, body, err := ParseRequestHeader(full[4:])
			if err != nil {
				t.Fatalf("key %d v%d: %v", k, v, err)
			}
			if h.APIKey != k || h.APIVersion != v || h.CorrelationID != int32(1000+v) {
				t.Fatalf("key %d v%d: header %+v", k, v, h)
			}
			if h.Flexible != req.IsFlexible() {
				t.Fatalf("key %d v%d: flexible %v, kmsg says %v", k, v, h.Flexible, req.IsFlexible())
			}
			wantID := !(k == 7 && v == 0)
			if wantID != (h.ClientID != nil) || (wantID && *h.ClientID != "brokkr-test") {
				t.Fatalf("key %d v%d: client id %v", k, v, h.ClientID)
			}
			if want := req.AppendTo(nil); !bytes.Equal(body, want) {
				t.Fatalf("key %d v%d: body %x, want %x", k, v, body, want)
			}
			checked++
		}
	}
	if checked < 300 {
		t.Fatalf("only %d key/version pairs checked", checked)
	}
}

func TestParseRequestHeaderTagsAndNulls(t *testing.T) {
	// Metadata v12 is flexible: null client id, two header tags, then body.
	b := []byte{0, 3, 0, 12, 0, 0, 0, 7, 0xff, 0xff}
	b = append(b, 2, 0, 3, 'a', 'b', 'c', 0x85, 0x01, 1, 'z') // tag 0 (3 bytes), tag 133 (1 byte)
	b = append(b, 0xAA, 0xBB)
	h, body, err := ParseRequestHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.ClientID != nil || h.HeaderVersion != 2 || !h.Flexible || h.CorrelationID != 7 {
		t.Fatalf("header %+v", h)
	}
	if !bytes.Equal(body, []byte{0xAA, 0xBB}) {
		t.Fatalf("body %x", body)
	}
	// Metadata v8 is not flexible: what follows the client id is body.
	b = []byte{0, 3, 0, 8, 0, 0, 0, 7, 0, 1, 'x', 2, 0}
	h, body, err = ParseRequestHeader(b)
	if err != nil || h.Flexible || h.HeaderVersion != 1 || *h.ClientID != "x" || !bytes.Equal(body, []byte{2, 0}) {
		t.Fatalf("v8: %+v %x %v", h, body, err)
	}
	// A version above anything kmsg knows is still parsed (the broker
	// answers UNSUPPORTED_VERSION); it is flexible.
	b = []byte{0, 18, 0x7f, 0, 0, 0, 0, 9, 0, 0, 0, 1}
	h, body, err = ParseRequestHeader(b)
	if err != nil || !h.Flexible || h.APIVersion != 0x7f00 || !bytes.Equal(body, []byte{1}) {
		t.Fatalf("future ApiVersions: %+v %x %v", h, body, err)
	}
}

func TestParseRequestHeaderBad(t *testing.T) {
	valid := frame(3, 12, 5, "client", []byte{1, 2, 3})[4:]
	// Every truncation of the header is an error, never a panic.
	hdrLen := 8 + 2 + len("client") + 1
	for i := 0; i < hdrLen; i++ {
		if _, _, err := ParseRequestHeader(valid[:i]); !errors.Is(err, ErrMalformedHeader) {
			t.Fatalf("truncated to %d: err %v", i, err)
		}
	}
	cases := map[string]struct {
		b    []byte
		want error
	}{
		"unknown key 999":        {[]byte{0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0, 0}, ErrUnknownAPIKey},
		"negative key":           {[]byte{0xff, 0xfe, 0, 0, 0, 0, 0, 1, 0, 0}, ErrUnknownAPIKey},
		"client id -2":           {[]byte{0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xfe}, ErrMalformedHeader},
		"client id too long":     {[]byte{0, 3, 0, 1, 0, 0, 0, 1, 0, 50, 'a'}, ErrMalformedHeader},
		"tag count too big":      {[]byte{0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0x7f}, ErrMalformedHeader},
		"tag size too big":       {[]byte{0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 1, 0, 9, 1}, ErrMalformedHeader},
		"varint overflow":        {[]byte{0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x7f}, ErrMalformedHeader},
		"varint unterminated":    {[]byte{0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0x80}, ErrMalformedHeader},
		"empty":                  {nil, ErrMalformedHeader},
		"short key only":         {[]byte{0, 3}, ErrMalformedHeader},
		"controlled shutdown v0": {[]byte{0, 7, 0, 0, 0, 0, 0, 1}, nil},
	}
	for name, c := range cases {
		_, _, err := ParseRequestHeader(c.b)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", name, err, c.want)
		}
	}
	// The unknown-key error still reports what it read, for the log.
	h, _, err := ParseRequestHeader([]byte{0x03, 0xe7, 0, 2, 0, 0, 0, 42})
	if h.APIKey != 999 || h.CorrelationID != 42 || !strings.Contains(err.Error(), "999") {
		t.Fatalf("unknown key: %+v %v", h, err)
	}
}

// The response-header rule, checked against kmsg's response types: header
// v1 exactly when the response version is flexible, except ApiVersions.
func TestResponseHeaderVersion(t *testing.T) {
	for k := int16(0); k <= kmsg.MaxKey; k++ {
		req := kmsg.RequestForKey(k)
		if req == nil {
			continue
		}
		for v := int16(0); v <= req.MaxVersion(); v++ {
			resp := req.ResponseKind()
			resp.SetVersion(v)
			want := int8(0)
			if resp.IsFlexible() && k != 18 {
				want = 1
			}
			if got := ResponseHeaderVersion(k, v); got != want {
				t.Fatalf("key %d v%d: header v%d, want v%d", k, v, got, want)
			}
		}
	}
	// Bytes: ApiVersions v3 (flexible) gets no tag byte; Metadata v12 does.
	if got := AppendResponseHeader(nil, 18, 3, 0x01020304, 10); !bytes.Equal(got, []byte{0, 0, 0, 14, 1, 2, 3, 4}) {
		t.Fatalf("ApiVersions v3 header %x", got)
	}
	if got := AppendResponseHeader(nil, 3, 12, 7, 10); !bytes.Equal(got, []byte{0, 0, 0, 15, 0, 0, 0, 7, 0}) {
		t.Fatalf("Metadata v12 header %x", got)
	}
	if got := AppendResponseHeader(nil, 3, 8, 7, 0); !bytes.Equal(got, []byte{0, 0, 0, 4, 0, 0, 0, 7}) {
		t.Fatalf("Metadata v8 header %x", got)
	}
	// Unknown keys never panic and get header v0.
	if ResponseHeaderVersion(999, 1) != 0 || ResponseHeaderVersion(-1, 0) != 0 || KnownAPIKey(-5) {
		t.Fatal("unknown key")
	}
}

// oneByteReader returns one byte per Read, like the slowest network.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestFrameReaderSplitAndLimit(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i := 0; i < 20; i++ {
		body := bytes.Repeat([]byte{byte(i)}, i*997)
		f := frame(0, 3, int32(i), "c", body)
		want = append(want, f[4:])
		stream = append(stream, f...)
	}
	for _, r := range []io.Reader{bytes.NewReader(stream), oneByteReader{bytes.NewReader(stream)}} {
		fr := newFrameReader(r, 1<<20)
		for i, w := range want {
			got, err := fr.next()
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("frame %d: err %v, equal %v", i, err, bytes.Equal(got, w))
			}
		}
		if _, err := fr.next(); err != io.EOF {
			t.Fatalf("after last frame: %v", err)
		}
	}
	// Truncated body: ErrUnexpectedEOF, not a clean EOF.
	fr := newFrameReader(bytes.NewReader(stream[:len(stream)-5]), 1<<20)
	for range len(want) - 1 {
		if _, err := fr.next(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fr.next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated: %v", err)
	}
	// Size limit is inclusive; one byte more is refused before allocating.
	ok := append([]byte{0, 0, 0, 16}, make([]byte, 16)...)
	if _, err := newFrameReader(bytes.NewReader(ok), 16).next(); err != nil {
		t.Fatalf("frame at the limit: %v", err)
	}
	if _, err := newFrameReader(bytes.NewReader([]byte{0, 0, 0, 17}), 16).next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := newFrameReader(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}), 16).next(); !errors.Is(err, ErrNegativeSize) {
		t.Fatalf("negative: %v", err)
	}
}

// A size prefix alone allocates at most initialBodyBuf; the buffer grows
// only with bytes received.
func TestFrameReaderMemoryBoundedByReceived(t *testing.T) {
	big := make([]byte, 4, 4+300<<10)
	binary.BigEndian.PutUint32(big, DefaultMaxRequestBytes)
	big = append(big, make([]byte, 300<<10)...)
	fr := newFrameReader(bytes.NewReader(big[:4+10]), DefaultMaxRequestBytes)
	if _, err := fr.next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err %v", err)
	}
	if cap(fr.body) > initialBodyBuf {
		t.Fatalf("100 MiB size prefix with 10 bytes allocated %d", cap(fr.body))
	}
	fr = newFrameReader(bytes.NewReader(big), DefaultMaxRequestBytes)
	if _, err := fr.next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err %v", err)
	}
	if c := cap(fr.body); c > 2*(300<<10) || fr.nb != 300<<10 {
		t.Fatalf("300 KiB received: buffer %d, filled %d", c, fr.nb)
	}
}
