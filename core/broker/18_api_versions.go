package broker

// ApiVersions (key 18), v0–v4.
//
// The answer lists exactly the APIs registered in this package. A request
// whose version is above v4 is answered (KIP-511) as a v0 response with
// UNSUPPORTED_VERSION and the ApiVersions range only, so the client can retry
// with a version it shares; the connection stays open. The response header
// is always v0 (no tagged-field byte), even for flexible v3+: netio knows.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const apiVersionsMax = 4

func init() { register(18, 0, apiVersionsMax, handleApiVersions) }

func handleApiVersions(_ context.Context, _ *Broker, rc *reqCtx, kreq kmsg.Request) response {
	resp := kreq.(*kmsg.ApiVersionsRequest).ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = advertised()
	return response{msg: resp}
}

// unsupportedApiVersions is the v0 answer to an ApiVersions request of a
// version this broker does not know.
func unsupportedApiVersions() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = []kmsg.ApiVersionsResponseApiKey{{ApiKey: 18, MinVersion: 0, MaxVersion: apiVersionsMax}}
	return resp
}
