// Package brokkr is a distributed commit-log broker that speaks the Kafka
// wire protocol. The broker itself lives in core/broker and the binary in
// cmd/brokkr; this root package holds the repository-wide architecture test
// that turns docs/DESIGN.md's import arrows into checks.
package brokkr
