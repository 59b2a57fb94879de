package netio

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Handler serves requests. Serve is called for the requests of one
// connection one at a time, in the order they arrived, on that
// connection's goroutine; different connections call it concurrently. It
// returns the response body (netio writes the size and response header), or
// NoResponse, CloseConnection, or Later for work that waits (a long-poll
// Fetch, acks=all) and may then overlap with the next requests.
type Handler interface {
	Serve(ctx context.Context, req *Request) Response
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) Response

// Serve calls f.
func (f HandlerFunc) Serve(ctx context.Context, req *Request) Response { return f(ctx, req) }

// Request is one decoded request frame.
type Request struct {
	RequestHeader
	// Body is the request body after the header (and header tagged fields),
	// ready for kmsg's ReadFrom at APIVersion. It belongs to the handler:
	// netio never reuses it.
	Body []byte
	// Conn describes the connection the request came on.
	Conn *Conn
	// Received is when the whole frame had arrived (for request-time
	// metrics).
	Received time.Time
}

// Conn describes one client connection. Handlers may keep per-connection
// state (a SASL principal, fetch sessions) with SetValue/Value.
type Conn struct {
	ID       uint64
	Listener string // listener name, e.g. PLAINTEXT
	Protocol SecurityProtocol
	Remote   net.Addr
	Local    net.Addr
	value    atomic.Value
}

// SetValue stores handler-owned per-connection state.
func (c *Conn) SetValue(v any) { c.value.Store(&v) }

// Value returns what SetValue stored, or nil.
func (c *Conn) Value() any {
	p, _ := c.value.Load().(*any)
	if p == nil {
		return nil
	}
	return *p
}

// Chunk is a piece of a response body: in-memory bytes, or a region of a
// file. A file that is an *os.File (more generally, one with a
// SyscallConn) goes to a TCP socket with sendfile; any other io.ReaderAt
// is copied (counted in Metrics.CopyFallbackBytes).
type Chunk struct {
	Bytes  []byte
	File   io.ReaderAt
	Offset int64
	Length int64
}

// BytesChunk is a chunk of in-memory bytes.
func BytesChunk(b []byte) Chunk { return Chunk{Bytes: b} }

// FileChunk is a chunk of length bytes of f starting at offset. f must stay
// open until the response's release function runs.
func FileChunk(f io.ReaderAt, offset, length int64) Chunk {
	return Chunk{File: f, Offset: offset, Length: length}
}

func (c Chunk) len() int64 {
	if c.File != nil {
		return c.Length
	}
	return int64(len(c.Bytes))
}

type respKind uint8

const (
	kindBody respKind = iota
	kindNone
	kindClose
	kindLater
)

// Response is what a handler returns. The zero value is an empty body.
type Response struct {
	kind    respKind
	chunks  []Chunk
	later   func(ctx context.Context) Response
	release func()
}

// Bytes is a response whose body is b (e.g. kmsg's AppendTo output,
// without size or response header).
func Bytes(b []byte) Response { return Response{chunks: []Chunk{{Bytes: b}}} }

// Chunks is a response whose body is the concatenation of chunks: bytes
// encoded in user space and file regions sent zero-copy.
func Chunks(chunks ...Chunk) Response { return Response{chunks: chunks} }

// NoResponse is returned for requests Kafka never answers (Produce with
// acks=0). Later responses on the connection keep their order.
func NoResponse() Response { return Response{kind: kindNone} }

// CloseConnection writes the responses of earlier requests, then closes
// the connection (Kafka's answer where no response is possible, e.g. an
// unsupported version of a non-ApiVersions request, or a failed acks=0
// produce).
func CloseConnection() Response { return Response{kind: kindClose} }

// Later runs f in its own goroutine and sends its result in this
// request's place in the order. Serve has already returned, so the next
// requests of the connection are served meanwhile (bounded by
// Config.MaxInflightPerConn). ctx is cancelled when the client goes away,
// the connection closes, or a forced shutdown begins; f must then return
// promptly (the connection's writer waits for it to keep the order). A
// panic in f is recovered and closes the connection, like one in Serve.
func Later(f func(ctx context.Context) Response) Response {
	return Response{kind: kindLater, later: f}
}

// WithRelease returns r with a function netio calls exactly once when it
// is done with r's bytes and files (written, or dropped because the
// connection closed): the place to return buffers or unpin segments.
func (r Response) WithRelease(f func()) Response {
	prev := r.release
	if prev == nil {
		r.release = f
	} else {
		r.release = func() { prev(); f() }
	}
	return r
}

func (r Response) String() string {
	switch r.kind {
	case kindNone:
		return "NoResponse"
	case kindClose:
		return "CloseConnection"
	case kindLater:
		return "Later"
	}
	return fmt.Sprintf("Response(%d chunks)", len(r.chunks))
}

func (r *Response) doRelease() {
	if f := r.release; f != nil {
		r.release = nil
		f()
	}
}
