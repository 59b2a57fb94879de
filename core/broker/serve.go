package broker

import (
	"context"

	"github.com/brokkr/brokkr/netio"
)

// Serve implements netio.Handler: it decodes one request, runs its handler
// and encodes the answer. An unknown key, an unsupported version or a body
// that does not parse closes this connection only.
func (b *Broker) Serve(ctx context.Context, req *netio.Request) netio.Response {
	rc := &reqCtx{version: req.APIVersion, listener: req.Conn.Listener}
	if req.ClientID != nil {
		rc.clientID = *req.ClientID
	}
	if req.Conn.Remote != nil {
		rc.remote = req.Conn.Remote.String()
	}
	resp, closeConn, err := b.dispatch(ctx, rc, req.APIKey, req.Body)
	if closeConn {
		b.log.Info("closing a connection after a request it cannot be answered", "remote", rc.remote, "client", rc.clientID, "key", req.APIKey, "version", req.APIVersion, "err", err)
		return netio.CloseConnection()
	}
	return encode(resp)
}

func encode(resp response) netio.Response {
	if resp.net != nil {
		return *resp.net
	}
	return netio.Bytes(resp.msg.AppendTo(make([]byte, 0, 256)))
}
