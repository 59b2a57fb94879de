package netio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzRequestFrame feeds a byte stream through the frame reader (as a
// connection would, split into odd reads) and the header parser. Seeds are
// frames a real franz-go client wrote (testdata/fuzz/FuzzRequestFrame,
// captured by TestRealClientKgo) plus kmsg-built requests for every key.
// Invariants: no panic; errors are the documented ones; a parsed body is
// the frame's suffix and re-encoding the header gives the frame back when
// it had no header tags; buffers never exceed what the input justifies.
func FuzzRequestFrame(f *testing.F) {
	fm := kmsg.NewRequestFormatter(kmsg.FormatterClientID("seed"))
	for k := int16(0); k <= kmsg.MaxKey; k++ {
		req := kmsg.RequestForKey(k)
		if req == nil {
			continue
		}
		req.SetVersion(req.MaxVersion())
		f.Add(fm.AppendRequest(nil, req, 1))
	}
	// Header tags, a null client id, and two frames back to back.
	tagged := []byte{0, 0, 0, 17, 0, 3, 0, 12, 0, 0, 0, 7, 0xff, 0xff, 2, 0, 1, 'a', 5, 1, 'b', 9, 9}
	f.Add(append(tagged, tagged...))
	f.Add([]byte{0, 0, 0, 8, 0, 7, 0, 0, 0, 0, 0, 1}) // ControlledShutdown v0, header v0

	f.Fuzz(func(t *testing.T, data []byte) {
		const maxFrame = 1 << 16
		fr := newFrameReader(oneByteAtTimes{r: bytes.NewReader(data), n: len(data)}, maxFrame)
		for i := 0; i < 1000; i++ {
			fb, err := fr.next()
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrNegativeSize) {
					t.Fatalf("unexpected frame error %v", err)
				}
				if cap(fr.body) > max(initialBodyBuf, 2*fr.nb) {
					t.Fatalf("buffer %d for %d bytes received", cap(fr.body), fr.nb)
				}
				return
			}
			h, body, err := ParseRequestHeader(fb)
			if err != nil {
				if !errors.Is(err, ErrMalformedHeader) && !errors.Is(err, ErrUnknownAPIKey) {
					t.Fatalf("unexpected header error %v", err)
				}
				continue
			}
			if len(body) > len(fb) || !bytes.Equal(fb[len(fb)-len(body):], body) {
				t.Fatal("body is not the frame's suffix")
			}
			if !KnownAPIKey(h.APIKey) || h.HeaderVersion != RequestHeaderVersion(h.APIKey, h.APIVersion) {
				t.Fatalf("header %+v", h)
			}
			re := binary.BigEndian.AppendUint16(nil, uint16(h.APIKey))
			re = binary.BigEndian.AppendUint16(re, uint16(h.APIVersion))
			re = binary.BigEndian.AppendUint32(re, uint32(h.CorrelationID))
			if h.HeaderVersion > 0 {
				if h.ClientID == nil {
					re = append(re, 0xff, 0xff)
				} else {
					re = binary.BigEndian.AppendUint16(re, uint16(len(*h.ClientID)))
					re = append(re, *h.ClientID...)
				}
			}
			hdrLen := len(fb) - len(body)
			if h.HeaderVersion == 2 && hdrLen == len(re)+1 {
				re = append(re, 0)
			}
			if hdrLen == len(re) && !bytes.Equal(fb[:hdrLen], re) {
				t.Fatalf("re-encoded header %x, frame header %x", re, fb[:hdrLen])
			}
		}
	})
}

// oneByteAtTimes splits reads into pieces of 1 to 7 bytes, like a network
// delivering a stream in odd pieces.
type oneByteAtTimes struct {
	r io.Reader
	n int
}

func (o oneByteAtTimes) Read(p []byte) (int, error) {
	k := 1 + (len(p)+o.n)%7
	return o.r.Read(p[:min(len(p), k)])
}
