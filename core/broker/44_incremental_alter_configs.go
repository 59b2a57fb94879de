package broker

// IncrementalAlterConfigs (key 44), v0–v1.
//
// SET and DELETE change single topic overrides; APPEND and SUBTRACT apply to
// list-valued configs (cleanup.policy). The new set is validated as a whole
// and takes effect at once on the topic's partitions.

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(44, 0, 1, handleIncrementalAlterConfigs) }

func handleIncrementalAlterConfigs(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		res := kmsg.NewIncrementalAlterConfigsResponseResource()
		res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
		if rr.ResourceType != kmsg.ConfigResourceTypeTopic {
			res.ErrorCode, res.ErrorMessage = b.setTopicConfigs(ctx, rr.ResourceType, rr.ResourceName, nil, true)
			resp.Resources = append(resp.Resources, res)
			continue
		}
		t, err := b.topic(ctx, rr.ResourceName)
		if err != nil {
			res.ErrorCode, res.ErrorMessage = errCode(err)
			resp.Resources = append(resp.Resources, res)
			continue
		}
		cfgs := map[string]string{}
		for k, v := range t.Configs {
			cfgs[k] = v
		}
		var bad string
		for _, c := range rr.Configs {
			val := ""
			if c.Value != nil {
				val = *c.Value
			}
			switch c.Op {
			case kmsg.IncrementalAlterConfigOpSet:
				cfgs[c.Name] = val
			case kmsg.IncrementalAlterConfigOpDelete:
				delete(cfgs, c.Name)
			case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
				if c.Name != "cleanup.policy" {
					bad = c.Name + " is not a list config; APPEND and SUBTRACT apply only to cleanup.policy"
					break
				}
				cur := cfgs[c.Name]
				if cur == "" {
					for _, e := range b.Config.DescribeTopic(nil) {
						if e.Name == c.Name {
							cur = e.Value
						}
					}
				}
				cfgs[c.Name] = editList(cur, val, c.Op == kmsg.IncrementalAlterConfigOpAppend)
			default:
				bad = "unknown operation " + c.Op.String()
			}
		}
		if bad != "" {
			res.ErrorCode, res.ErrorMessage = kerr.InvalidConfig.Code, &bad
		} else {
			res.ErrorCode, res.ErrorMessage = b.setTopicConfigs(ctx, rr.ResourceType, rr.ResourceName, cfgs, req.ValidateOnly)
		}
		resp.Resources = append(resp.Resources, res)
	}
	return response{msg: resp}
}

func editList(cur, val string, add bool) string {
	var out []string
	has := false
	for _, e := range strings.Split(cur, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if e == val {
			has = true
			if !add {
				continue
			}
		}
		out = append(out, e)
	}
	if add && !has {
		out = append(out, val)
	}
	return strings.Join(out, ",")
}
