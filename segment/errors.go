package segment

import "errors"

// KafkaError is an error that maps to one Kafka protocol error code. The
// exported values below are sentinels: errors returned by this package
// wrap them (test with errors.Is) and KafkaCode finds the code.
type KafkaError struct {
	Code int16
	Name string
}

func (e *KafkaError) Error() string { return e.Name }

// The Kafka errors a segment operation can end in.
var (
	// ErrCorruptMessage (2, CORRUPT_MESSAGE): CRC mismatch, broken framing,
	// a batchLength that disagrees with the bytes.
	ErrCorruptMessage = &KafkaError{Code: 2, Name: "CORRUPT_MESSAGE"}
	// ErrMessageTooLarge (10, MESSAGE_TOO_LARGE): a batch above
	// message.max.bytes (max.message.bytes per topic).
	ErrMessageTooLarge = &KafkaError{Code: 10, Name: "MESSAGE_TOO_LARGE"}
	// ErrUnsupportedForMessageFormat (43, UNSUPPORTED_FOR_MESSAGE_FORMAT):
	// magic other than 2.
	ErrUnsupportedForMessageFormat = &KafkaError{Code: 43, Name: "UNSUPPORTED_FOR_MESSAGE_FORMAT"}
	// ErrStorage (56, KAFKA_STORAGE_ERROR): a disk operation failed (the
	// wrapped error is the os error, e.g. ENOSPC or EIO).
	ErrStorage = &KafkaError{Code: 56, Name: "KAFKA_STORAGE_ERROR"}
	// ErrInvalidRecord (87, INVALID_RECORD): record count or offset deltas
	// inconsistent with the header.
	ErrInvalidRecord = &KafkaError{Code: 87, Name: "INVALID_RECORD"}
)

// KafkaCode is the Kafka error code for err: 0 for nil, the code of the
// KafkaError it wraps, or -1 (UNKNOWN_SERVER_ERROR) otherwise.
func KafkaCode(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *KafkaError
	if errors.As(err, &ke) {
		return ke.Code
	}
	return -1
}
