package broker

// AlterConfigs (key 33), v0–v2.
//
// Replaces a topic's whole set of overrides (the legacy, non-incremental
// form: keys not listed go back to their defaults). Takes effect at once on
// the topic's partitions. Broker configs are static in Brokkr:
// INVALID_REQUEST says so.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(33, 0, 2, handleAlterConfigs) }

func handleAlterConfigs(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		res := kmsg.NewAlterConfigsResponseResource()
		res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
		cfgs := map[string]string{}
		for _, c := range rr.Configs {
			if c.Value != nil {
				cfgs[c.Name] = *c.Value
			}
		}
		code, msg := b.setTopicConfigs(ctx, rr.ResourceType, rr.ResourceName, cfgs, req.ValidateOnly)
		res.ErrorCode, res.ErrorMessage = code, msg
		resp.Resources = append(resp.Resources, res)
	}
	return response{msg: resp}
}

// setTopicConfigs validates and stores a topic's new overrides and applies
// them to its open logs.
func (b *Broker) setTopicConfigs(ctx context.Context, rt kmsg.ConfigResourceType, name string, cfgs map[string]string, validateOnly bool) (int16, *string) {
	if rt != kmsg.ConfigResourceTypeTopic {
		msg := "only topic configs can be altered; broker configs are static (set them in the properties file)"
		return kerr.InvalidRequest.Code, &msg
	}
	m := b.controllerMeta()
	if m == nil {
		return kerr.NotController.Code, nil
	}
	if err := b.checkPolicyConfigs(cfgs); err != nil {
		return errCode(err)
	}
	if err := m.SetConfigs(ctx, name, cfgs, validateOnly); err != nil {
		return errCode(err)
	}
	if !validateOnly {
		if err := b.applyTopicConfig(name, cfgs); err != nil {
			return errCode(err)
		}
	}
	return 0, nil
}
