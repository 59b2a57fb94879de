// Package netio is Brokkr's network layer: listeners parsed from Kafka's
// `listeners` / `advertised.listeners`, Kafka request framing and header
// decoding, per-connection request pipelining with responses in request
// order, and the zero-copy response writer (sendfile).
//
// The broker plugs in through one interface, Handler: netio decodes the
// frame and header and calls Serve with the body; Serve returns the
// response body (Bytes, or Chunks mixing bytes and file regions), or
// NoResponse, CloseConnection, or Later. netio writes the size and the
// response header.
//
// # Frame layouts
//
// Request frame (client to broker), big-endian:
//
//	size            int32   bytes that follow; 0 <= size <= socket.request.max.bytes,
//	                        checked before any buffer for the body exists
//	api_key         int16
//	api_version     int16
//	correlation_id  int32
//	client_id       int16 length + bytes, -1 = null       (absent in header v0)
//	tagged_fields   uvarint count, then (uvarint tag, uvarint size, bytes)*
//	                                                      (header v2 only)
//	body            the rest, handed to the Handler as Request.Body
//
// Header v2 is used when the request version is flexible (per API key, from
// kmsg's generated tables), v0 only by ControlledShutdown v0, v1 otherwise.
// The client id stays a non-compact nullable string even in header v2.
//
// Response frame (broker to client):
//
//	size            int32   bytes that follow (header + body)
//	correlation_id  int32   copied from the request
//	tagged_fields   one 0 byte, only in response header v1: flexible
//	                versions of every API except ApiVersions (key 18),
//	                which always answers with header v0 (KIP-511)
//	body            the Response's chunks, in order
//
// See ResponseHeaderVersion and AppendResponseHeader. The body length is
// the sum of the chunk lengths, known before the first byte is written, so
// file regions can follow the header without buffering.
//
// # Ordering invariant
//
// For one connection, Handler.Serve is called for requests one at a time,
// in the order they arrived (as Kafka processes a connection's requests in
// order: a producer pipelining several Produce requests to one partition
// relies on it), and responses are written strictly in that order. A
// handler that must wait (a long-poll Fetch, acks=all) returns Later: the
// wait runs in its own goroutine while the next requests are read and
// served, and its result still takes its original place in the response
// order. NoResponse (acks=0) takes a place and writes nothing.
// MaxInflightPerConn bounds the requests read but not yet answered; at the
// bound netio stops reading that connection. Each connection has its own
// reader and writer goroutines; nothing is shared between connections but
// the handler, so a long-poll on one never delays another.
//
// # Bad input
//
// Bad input closes only its connection, after the responses to the
// requests before it are written: an unknown API key (no response is
// possible), a malformed or truncated header, a negative or oversized size
// prefix, a handler panic (recovered at the connection boundary). An
// unsupported version of a known API is passed to the handler: the broker
// decides. Every case is counted in Metrics. Memory per connection is
// bounded by the bytes received: a body buffer starts at 64 KiB at most
// and doubles only as bytes arrive.
//
// # Zero-copy
//
// Runs of in-memory chunks go out with writev (net.Buffers). A file chunk
// whose file has a SyscallConn (an *os.File) goes to a socket that has one
// (*net.TCPConn) with unix.Sendfile on the raw descriptors, at most
// SendfileChunk bytes per call, with EAGAIN handed back to Go's poller
// through RawConn.Write; the file offset is never moved, so connections
// share segment files freely. Anything else (a TLS connection later, an
// in-memory io.ReaderAt) is copied with pread+write through a pooled
// buffer and counted in Metrics.CopyFallbackBytes.
//
// # Dependencies
//
// netio imports the standard library, golang.org/x/sys/unix, and
// github.com/twmb/franz-go/pkg/kmsg only for its generated table of which
// API versions are flexible (RequestForKey, SetVersion, IsFlexible, nil
// for an unknown key). kmsg has no dependencies of its own.
package netio
