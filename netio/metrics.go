package netio

import "sync/atomic"

// Metrics is a snapshot of a Server's counters (monotonic since start),
// for the broker to export under whatever names it likes.
type Metrics struct {
	ConnectionsAccepted uint64
	ConnectionsClosed   uint64
	RequestsReceived    uint64 // frames with a valid header passed to the handler
	ResponsesSent       uint64
	FramesTooLarge      uint64 // size prefix > socket.request.max.bytes (connection closed)
	UnknownAPIKeys      uint64 // connection closed, no response possible
	MalformedHeaders    uint64 // truncated/inconsistent header or negative size (connection closed)
	PanicsRecovered     uint64 // handler panics caught at the connection boundary (connection closed)
	IdleCloses          uint64 // connections.max.idle.ms expired
	SendfileBytes       uint64 // file-region bytes sent with sendfile
	CopyFallbackBytes   uint64 // file-region bytes copied through user space
	WriteErrors         uint64 // responses that could not be written (peer gone, write time-out)
}

type counters struct {
	connectionsAccepted, connectionsClosed        atomic.Uint64
	requestsReceived, responsesSent               atomic.Uint64
	framesTooLarge, unknownAPIKeys                atomic.Uint64
	malformedHeaders, panicsRecovered, idleCloses atomic.Uint64
	sendfileBytes, copyFallbackBytes, writeErrors atomic.Uint64
	// sendfileWaits counts EAGAINs handed to the poller (tests check the
	// path is exercised).
	sendfileWaits atomic.Uint64
}

func (c *counters) snapshot() Metrics {
	return Metrics{
		ConnectionsAccepted: c.connectionsAccepted.Load(),
		ConnectionsClosed:   c.connectionsClosed.Load(),
		RequestsReceived:    c.requestsReceived.Load(),
		ResponsesSent:       c.responsesSent.Load(),
		FramesTooLarge:      c.framesTooLarge.Load(),
		UnknownAPIKeys:      c.unknownAPIKeys.Load(),
		MalformedHeaders:    c.malformedHeaders.Load(),
		PanicsRecovered:     c.panicsRecovered.Load(),
		IdleCloses:          c.idleCloses.Load(),
		SendfileBytes:       c.sendfileBytes.Load(),
		CopyFallbackBytes:   c.copyFallbackBytes.Load(),
		WriteErrors:         c.writeErrors.Load(),
	}
}
