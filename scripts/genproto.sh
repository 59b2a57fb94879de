#!/usr/bin/env bash
# Regenerates the plugin wire protocol's Go code (plugins/internal/pluginpb)
# from policy.proto. The generated files are committed: building and testing
# Brokkr never needs protoc. Run this only after editing the .proto.
#
# Installs what is missing: protoc (Debian's protobuf-compiler, via apt-get)
# and the two Go generators into a temporary GOBIN (protoc-gen-go at the
# google.golang.org/protobuf version in go.mod, protoc-gen-go-grpc v1.5.1,
# whose output needs grpc >= 1.64; go.mod has 1.83).
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_GRPC_VERSION=v1.5.1
PROTOBUF_VERSION=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)

if ! command -v protoc >/dev/null; then
	echo "genproto: protoc not found; installing protobuf-compiler" >&2
	apt-get install -y protobuf-compiler >/dev/null
fi

gobin=$(mktemp -d)
trap 'rm -rf "$gobin"' EXIT
GOBIN=$gobin go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOBUF_VERSION}"
GOBIN=$gobin go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"

PATH=$gobin:$PATH protoc \
	--proto_path=plugins/internal/pluginpb \
	--go_out=plugins/internal/pluginpb --go_opt=paths=source_relative \
	--go-grpc_out=plugins/internal/pluginpb --go-grpc_opt=paths=source_relative \
	policy.proto
echo "genproto: regenerated plugins/internal/pluginpb (protoc $(protoc --version | cut -d' ' -f2), protoc-gen-go ${PROTOBUF_VERSION}, protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION})"
