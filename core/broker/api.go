package broker

import (
	"context"
	"sort"

	"github.com/brokkr/brokkr/netio"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// reqCtx is what a handler knows about the request besides its body.
type reqCtx struct {
	version  int16
	clientID string
	listener string // the listener the request came in on
	remote   string
}

// response is what a handler returns: a kmsg response to encode, or a
// netio response built by the handler itself (the zero-copy Fetch path, a
// long poll, no response for acks=0).
type response struct {
	msg kmsg.Response
	net *netio.Response
}

func netResponse(r netio.Response) response { return response{net: &r} }

type handlerFunc func(ctx context.Context, b *Broker, rc *reqCtx, req kmsg.Request) response

// api is one served Kafka API: its key, the versions advertised, the handler.
type api struct {
	key      int16
	name     string
	min, max int16
	handle   handlerFunc
}

// apis is filled by register calls in each NN_name.go file's init: serving
// an API and advertising it in ApiVersions are the same act, so the two can
// never drift apart.
var apis = map[int16]*api{}

func register(key int16, min, max int16, h handlerFunc) {
	if _, dup := apis[key]; dup {
		panic("broker: API registered twice") // a programming error at init time
	}
	name := "unknown"
	if r := kmsg.RequestForKey(key); r != nil {
		name = kmsg.NameForKey(key)
		if max > r.MaxVersion() {
			panic("broker: advertised version above what kmsg can parse for " + name)
		}
	}
	apis[key] = &api{key: key, name: name, min: min, max: max, handle: h}
}

// advertised returns every served API sorted by key, for ApiVersions.
func advertised() []kmsg.ApiVersionsResponseApiKey {
	out := make([]kmsg.ApiVersionsResponseApiKey, 0, len(apis))
	for _, a := range apis {
		out = append(out, kmsg.ApiVersionsResponseApiKey{ApiKey: a.key, MinVersion: a.min, MaxVersion: a.max})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ApiKey < out[j].ApiKey })
	return out
}
