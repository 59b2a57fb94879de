package broker

// DescribeConfigs (key 32), v0–v4.
//
// Topics: every topic config with its effective value, source (topic
// override, static broker key, default) and, when asked (v1+
// IncludeSynonyms), the broker key it falls back to. Brokers: the broker
// keys Brokkr understands; only this broker's id (or an empty name, the
// cluster default) is known. Other resource types are INVALID_REQUEST.
//
// Status: a TOPIC request that names keys starting with brokkr.status.
// gets read-only entries with compact JSON values (policies.go,
// status.go): brokkr.status.policy, brokkr.status.partitions,
// brokkr.status.partition.<n> and brokkr.status.retention.plan (a dry run
// of the retention policy, computed on request). Only partitions this
// broker hosts are reported, so a client asks every broker and merges. An
// all-configs describe (ConfigNames null) never includes them, so Kafka
// tools see nothing unusual (docs/protocol.md).

import (
	"context"
	"strconv"

	"github.com/brokkr/brokkr/core/config"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(32, 0, 4, handleDescribeConfigs) }

func handleDescribeConfigs(ctx context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	var brokerCfg map[string]config.BrokerEntry // the broker keys by name, read once when a synonym needs them
	for _, rr := range req.Resources {
		res := kmsg.NewDescribeConfigsResponseResource()
		res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
		want := func(name string) bool {
			if rr.ConfigNames == nil {
				return true
			}
			for _, n := range rr.ConfigNames {
				if n == name {
					return true
				}
			}
			return false
		}
		add := func(name, value string, src config.ConfigSource, synonym string) {
			if !want(name) {
				return
			}
			c := kmsg.NewDescribeConfigsResponseResourceConfig()
			v := value
			c.Name, c.Value, c.Source = name, &v, kmsg.ConfigSource(src)
			c.IsDefault = src == config.SourceDefault
			c.ConfigType = kmsg.ConfigTypeString
			if req.IncludeSynonyms {
				s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				s.Name, s.Value, s.Source = name, &v, kmsg.ConfigSource(src)
				c.ConfigSynonyms = append(c.ConfigSynonyms, s)
				if synonym != "" && src == config.SourceTopic {
					if brokerCfg == nil {
						brokerCfg = map[string]config.BrokerEntry{}
						for _, be := range b.Config.DescribeBroker() {
							brokerCfg[be.Name] = be
						}
					}
					if be, ok := brokerCfg[synonym]; ok {
						bv := be.Value
						bs := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
						bs.Name, bs.Value, bs.Source = synonym, &bv, kmsg.ConfigSource(be.Source)
						c.ConfigSynonyms = append(c.ConfigSynonyms, bs)
					}
				}
			}
			res.Configs = append(res.Configs, c)
		}
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			t, err := b.topic(ctx, rr.ResourceName)
			if err != nil {
				res.ErrorCode, res.ErrorMessage = errCode(err)
				break
			}
			for _, e := range b.Config.DescribeTopic(t.Configs) {
				add(e.Name, e.Value, e.Source, e.Synonym)
			}
			for _, n := range rr.ConfigNames {
				if v, ok := b.statusEntry(ctx, t.Name, t.Configs, n); ok {
					c := kmsg.NewDescribeConfigsResponseResourceConfig()
					c.Name, c.Value, c.ReadOnly = n, &v, true
					c.Source = kmsg.ConfigSourceUnknown
					c.ConfigType = kmsg.ConfigTypeString
					res.Configs = append(res.Configs, c)
				}
			}
		case kmsg.ConfigResourceTypeBroker:
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(b.Config.NodeID)) {
				res.ErrorCode = kerr.InvalidRequest.Code
				msg := "only broker " + strconv.Itoa(int(b.Config.NodeID)) + " can be described here"
				res.ErrorMessage = &msg
				break
			}
			for _, e := range b.Config.DescribeBroker() {
				add(e.Name, e.Value, e.Source, "")
			}
		default:
			res.ErrorCode = kerr.InvalidRequest.Code
			msg := "unsupported resource type " + rr.ResourceType.String()
			res.ErrorMessage = &msg
		}
		resp.Resources = append(resp.Resources, res)
	}
	return response{msg: resp}
}
