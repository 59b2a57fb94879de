package netio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultMaxRequestBytes is Kafka's socket.request.max.bytes default (100 MiB).
const DefaultMaxRequestBytes = 104857600

// APIKeyApiVersions is the one API whose responses always use response
// header v0, whatever the request version (KIP-511: a client that sent a
// version the broker does not know must still be able to read the answer).
const APIKeyApiVersions = 18

// apiKeyControlledShutdown v0 is the one request that uses request header v0
// (no client id).
const apiKeyControlledShutdown = 7

// Errors from ParseRequestHeader and the frame reader. Each one closes only
// the connection that sent the frame; errors.Is tells them apart.
var (
	// ErrUnknownAPIKey: the API key is not one Kafka defines (per kmsg), so
	// the header layout, and with it the correlation id's meaning, is unknown:
	// no response is possible.
	ErrUnknownAPIKey = errors.New("unknown api key")
	// ErrMalformedHeader: the request header is truncated or inconsistent.
	ErrMalformedHeader = errors.New("malformed request header")
	// ErrFrameTooLarge: the 4-byte size prefix exceeds socket.request.max.bytes.
	ErrFrameTooLarge = errors.New("request frame larger than socket.request.max.bytes")
	// ErrNegativeSize: the 4-byte size prefix is negative.
	ErrNegativeSize = errors.New("negative request frame size")
)

// RequestHeader is a decoded Kafka request header (v0, v1 or v2).
type RequestHeader struct {
	APIKey        int16
	APIVersion    int16
	CorrelationID int32
	// ClientID is nil when the client sent a null client id (or header v0).
	ClientID *string
	// HeaderVersion is 0 (ControlledShutdown v0 only), 1, or 2 (flexible
	// request versions: the header ends with tagged fields, which are skipped).
	HeaderVersion int8
	// Flexible reports whether the request version uses Kafka's flexible
	// (compact, tagged) encoding; the response header is then v1, except for
	// ApiVersions (see ResponseHeaderVersion).
	Flexible bool
}

// flexTable holds, per API key, the first flexible version (from kmsg's
// generated tables), or -1 when the key is unknown to kmsg.
var (
	flexOnce  sync.Once
	flexTable [kmsg.MaxKey + 1]int16
)

func buildFlexTable() {
	for k := range flexTable {
		flexTable[k] = -1
		req := kmsg.RequestForKey(int16(k))
		if req == nil {
			continue
		}
		// Flexibility is monotone in the version; kmsg's IsFlexible is
		// "Version >= N", so it answers above MaxVersion too.
		first := int16(0x7fff)
		for v := int16(0); v <= req.MaxVersion()+1; v++ {
			req.SetVersion(v)
			if req.IsFlexible() {
				first = v
				break
			}
		}
		flexTable[k] = first
	}
}

// IsFlexible reports whether version of API key uses flexible encoding, and
// whether the key is known at all. An unknown key returns (false, false) and
// never panics: callers close the connection.
func IsFlexible(key, version int16) (flexible, known bool) {
	flexOnce.Do(buildFlexTable)
	if key < 0 || int(key) >= len(flexTable) || flexTable[key] < 0 {
		return false, false
	}
	return version >= flexTable[key], true
}

// KnownAPIKey reports whether key is an API key Kafka defines (per kmsg).
func KnownAPIKey(key int16) bool {
	_, known := IsFlexible(key, 0)
	return known
}

// RequestHeaderVersion returns the request header version Kafka uses for
// this key and version (0, 1 or 2), or -1 for an unknown key.
func RequestHeaderVersion(key, version int16) int8 {
	flex, known := IsFlexible(key, version)
	switch {
	case !known:
		return -1
	case key == apiKeyControlledShutdown && version == 0:
		return 0
	case flex:
		return 2
	default:
		return 1
	}
}

// ResponseHeaderVersion returns the response header version for a request
// of this key and version: 1 (correlation id + empty tagged fields) for
// flexible versions, 0 (correlation id only) otherwise and always for
// ApiVersions (key 18).
func ResponseHeaderVersion(key, version int16) int8 {
	flex, _ := IsFlexible(key, version)
	if flex && key != APIKeyApiVersions {
		return 1
	}
	return 0
}

// AppendResponseHeader appends the response frame prefix for a response of
// bodyLen bytes: the 4-byte size (covering header and body), the
// correlation id, and for response header v1 one 0 byte (no tagged fields).
func AppendResponseHeader(dst []byte, key, version int16, correlationID int32, bodyLen int64) []byte {
	hv := ResponseHeaderVersion(key, version)
	size := 4 + bodyLen
	if hv == 1 {
		size++
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(size))
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if hv == 1 {
		dst = append(dst, 0)
	}
	return dst
}

// maxResponseBodyLen keeps size+header within the int32 size prefix.
const maxResponseBodyLen = 1<<31 - 1 - 5

// ParseRequestHeader decodes the request header at the start of frame (the
// bytes after the size prefix) and returns it with the body that follows.
// The body aliases frame. For an unknown API key it returns the key, version
// and correlation id it read with an error wrapping ErrUnknownAPIKey; any
// truncation or bad length wraps ErrMalformedHeader. It never panics.
func ParseRequestHeader(frame []byte) (RequestHeader, []byte, error) {
	var h RequestHeader
	if len(frame) < 8 {
		return h, nil, fmt.Errorf("%w: %d bytes, need at least 8 for key, version and correlation id", ErrMalformedHeader, len(frame))
	}
	h.APIKey = int16(binary.BigEndian.Uint16(frame[0:]))
	h.APIVersion = int16(binary.BigEndian.Uint16(frame[2:]))
	h.CorrelationID = int32(binary.BigEndian.Uint32(frame[4:]))
	hv := RequestHeaderVersion(h.APIKey, h.APIVersion)
	if hv < 0 {
		return h, nil, fmt.Errorf("%w %d (version %d, correlation id %d)", ErrUnknownAPIKey, h.APIKey, h.APIVersion, h.CorrelationID)
	}
	h.HeaderVersion = hv
	h.Flexible = hv == 2
	rest := frame[8:]
	if hv == 0 {
		return h, rest, nil
	}
	// Client id: a nullable int16-length string, never compact (not even in
	// header v2).
	if len(rest) < 2 {
		return h, nil, fmt.Errorf("%w: truncated client id length", ErrMalformedHeader)
	}
	n := int16(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	switch {
	case n == -1:
	case n < -1:
		return h, nil, fmt.Errorf("%w: client id length %d", ErrMalformedHeader, n)
	case int(n) > len(rest):
		return h, nil, fmt.Errorf("%w: client id length %d but %d bytes left", ErrMalformedHeader, n, len(rest))
	default:
		s := string(rest[:n])
		h.ClientID = &s
		rest = rest[n:]
	}
	if hv == 2 {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return h, nil, err
		}
	}
	return h, rest, nil
}

// uvarint reads a Kafka unsigned varint of at most 5 bytes (a uint32).
func uvarint(b []byte) (uint32, []byte, error) {
	var v uint32
	for i := 0; i < 5; i++ {
		if i >= len(b) {
			return 0, nil, fmt.Errorf("%w: truncated varint in tagged fields", ErrMalformedHeader)
		}
		c := b[i]
		if i == 4 && c > 0x0f {
			return 0, nil, fmt.Errorf("%w: varint overflows 32 bits in tagged fields", ErrMalformedHeader)
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, b[i+1:], nil
		}
	}
	return 0, nil, fmt.Errorf("%w: varint longer than 5 bytes in tagged fields", ErrMalformedHeader)
}

// skipTags skips a tagged-fields section: count, then (tag, size, bytes)*.
func skipTags(b []byte) ([]byte, error) {
	num, b, err := uvarint(b)
	if err != nil {
		return nil, err
	}
	// Each tag takes at least two bytes, so num is bounded by len(b).
	if int64(num)*2 > int64(len(b)) {
		return nil, fmt.Errorf("%w: %d tagged fields in %d bytes", ErrMalformedHeader, num, len(b))
	}
	for i := uint32(0); i < num; i++ {
		if _, b, err = uvarint(b); err != nil {
			return nil, err
		}
		var size uint32
		if size, b, err = uvarint(b); err != nil {
			return nil, err
		}
		if int64(size) > int64(len(b)) {
			return nil, fmt.Errorf("%w: tagged field of %d bytes but %d left", ErrMalformedHeader, size, len(b))
		}
		b = b[size:]
	}
	return b, nil
}

// frameReader reads size-prefixed frames. It is resumable: after a read
// error (a deadline), calling next again continues where it stopped. The
// body buffer grows only as bytes arrive, so a size prefix alone never
// allocates more than initialBodyBuf.
type frameReader struct {
	r     *bufio.Reader
	max   int32
	hdr   [4]byte
	nh    int
	size  int // -1 while the size prefix is incomplete
	body  []byte
	nb    int
	total int64 // bytes consumed, for activity tracking
}

// initialBodyBuf is the most a frame's body buffer holds before bytes for
// it have arrived; it then doubles as it fills, up to the frame size.
const initialBodyBuf = 64 << 10

func newFrameReader(r io.Reader, max int32) *frameReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 32<<10)
	}
	return &frameReader{r: br, max: max, size: -1}
}

// inFrame reports whether part of a frame has been read.
func (f *frameReader) inFrame() bool { return f.nh > 0 }

// next returns the next frame (without its size prefix). The returned slice
// is owned by the caller. Errors wrapping ErrFrameTooLarge or
// ErrNegativeSize are final: framing is lost.
func (f *frameReader) next() ([]byte, error) {
	for f.nh < 4 {
		n, err := f.r.Read(f.hdr[f.nh:])
		f.nh += n
		f.total += int64(n)
		if err != nil && f.nh < 4 {
			if err == io.EOF && f.nh > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	if f.size < 0 {
		sz := int32(binary.BigEndian.Uint32(f.hdr[:]))
		if sz < 0 {
			return nil, fmt.Errorf("%w: %d", ErrNegativeSize, sz)
		}
		if sz > f.max {
			return nil, fmt.Errorf("%w: %d > %d", ErrFrameTooLarge, sz, f.max)
		}
		f.size = int(sz)
		f.body = make([]byte, min(f.size, initialBodyBuf))
		f.nb = 0
	}
	for f.nb < f.size {
		if f.nb == len(f.body) {
			grown := make([]byte, min(2*len(f.body), f.size))
			copy(grown, f.body[:f.nb])
			f.body = grown
		}
		n, err := f.r.Read(f.body[f.nb:])
		f.nb += n
		f.total += int64(n)
		if err != nil && f.nb < f.size {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	frame := f.body[:f.size]
	f.body, f.nb, f.size, f.nh = nil, 0, -1, 0
	return frame, nil
}
