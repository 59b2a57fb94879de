package broker

// ListGroups (key 16), v0–v5.
//
// Lists the groups this broker coordinates (those of the __consumer_offsets
// partitions it leads), including groups that only store offsets (protocol
// type ""). While any of its shards is loading the answer carries
// COORDINATOR_LOAD_IN_PROGRESS along with the groups already loaded, as
// Kafka. v4+ filter by state and v5+ by type, both case-insensitively;
// every group here is "classic".

import (
	"context"
	"sort"
	"strings"

	"github.com/brokkr/brokkr/core/group"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(16, 0, 5, handleListGroups) }

func handleListGroups(_ context.Context, b *Broker, _ *reqCtx, kreq kmsg.Request) response {
	req := kreq.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	match := func(filter []string, v string) bool {
		if len(filter) == 0 {
			return true
		}
		for _, f := range filter {
			if strings.EqualFold(f, v) {
				return true
			}
		}
		return false
	}
	shards, loading := b.groups.allShards()
	for _, s := range shards {
		s.mu.Lock()
		if s.state == shardLoading {
			loading = true
		}
		if s.state == shardActive {
			for name, e := range s.groups {
				st := e.g.State()
				if st == group.Dead {
					continue
				}
				if req.Version >= 4 && !match(req.StatesFilter, st.String()) {
					continue
				}
				if req.Version >= 5 && !match(req.TypesFilter, "classic") {
					continue
				}
				g := kmsg.NewListGroupsResponseGroup()
				g.Group, g.ProtocolType, g.GroupState, g.GroupType = name, e.g.ProtocolType(), st.String(), "classic"
				resp.Groups = append(resp.Groups, g)
			}
		}
		s.mu.Unlock()
	}
	sort.Slice(resp.Groups, func(i, j int) bool { return resp.Groups[i].Group < resp.Groups[j].Group })
	if loading {
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
	}
	return response{msg: resp}
}
