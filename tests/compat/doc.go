// Package compat runs real Kafka clients (franz-go, sarama, librdkafka via
// kcat and python3-confluent-kafka) against the real brokkr binary.
package compat
