// Package brokkr is a distributed commit-log broker that speaks the Kafka
// wire protocol. This root package is the embedding API: a Server opens the
// coordination backend its config names and runs a broker (see
// examples/embed). The broker itself lives in core/broker and the binary in
// cmd/brokkr. The repository-wide architecture test, which turns the import
// arrows of the design into checks, lives here too.
package brokkr
