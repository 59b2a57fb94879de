// Package broker holds end-to-end tests of the real `brokkr serve` binary
// (started through internal/testbroker): bad input on raw TCP connections
// hurts only the connection that sent it, version floors and maxima, the
// idempotent producer's duplicate and gap checks across a restart, the
// topic lifecycle (configs, partitions, delete and recreate), kill -9 and
// SIGTERM during a produce stream, and zero-config start-up time.
//
// The package has no code of its own; everything is in its _test.go files.
package broker
