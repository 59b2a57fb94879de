package broker

// DescribeCluster (key 60), v0–v1.
//
// The cluster id, the controller and every live broker with its endpoint on
// the listener the request came in on. EndpointType 1 (brokers) is the only
// type served; 2 (controllers) gets UNSUPPORTED_ENDPOINT_TYPE as in Kafka.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(60, 0, 1, handleDescribeCluster) }

func handleDescribeCluster(ctx context.Context, b *Broker, rc *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = 1
	if req.Version >= 1 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return response{msg: resp}
	}
	resp.ClusterID = b.clusterID
	resp.ControllerID = b.controllerID(ctx)
	resp.ClusterAuthorizedOperations = -2147483648
	for _, bl := range b.brokersOn(rc.listener) {
		db := kmsg.NewDescribeClusterResponseBroker()
		db.NodeID, db.Host, db.Port, db.Rack = bl.id, bl.host, bl.port, bl.rack
		resp.Brokers = append(resp.Brokers, db)
	}
	return response{msg: resp}
}
