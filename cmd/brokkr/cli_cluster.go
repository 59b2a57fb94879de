package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func newClusterCmd(o *clientOpts) *cobra.Command {
	c := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect the cluster",
		Args:  cobra.ArbitraryArgs,
		RunE:  nounRun,
	}
	c.AddCommand(newClusterInfoCmd(o))
	return c
}

// clusterBroker is one broker in `cluster info --json`.
type clusterBroker struct {
	ID         int32   `json:"id"`
	Host       string  `json:"host"`
	Port       int32   `json:"port"`
	Rack       *string `json:"rack"`
	Controller bool    `json:"controller"`
}

// apiRange is one API's version range and the brokers that serve exactly it.
type apiRange struct {
	Key     int16   `json:"key"`
	Name    string  `json:"name"`
	Min     int16   `json:"min"`
	Max     int16   `json:"max"`
	Brokers []int32 `json:"brokers"`
}

// clusterInfo is `cluster info --json`.
type clusterInfo struct {
	ClusterID   string          `json:"cluster_id"`
	Controller  int32           `json:"controller"`
	Brokers     []clusterBroker `json:"brokers"`
	APIVersions []apiRange      `json:"api_versions,omitempty"`
}

func newClusterInfoCmd(o *clientOpts) *cobra.Command {
	var apiVersions bool
	c := &cobra.Command{
		Use:   "info",
		Short: "Show the cluster ID, the controller and the brokers",
		Example: `  brokkr cluster info
  brokkr cluster info --api-versions --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, adm, done, err := o.adminRequest(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			md, err := adm.BrokerMetadata(ctx)
			if err != nil {
				return o.requestErr("metadata", err)
			}
			info := clusterInfo{ClusterID: md.Cluster, Controller: md.Controller, Brokers: []clusterBroker{}}
			for _, b := range md.Brokers {
				info.Brokers = append(info.Brokers, clusterBroker{ID: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack, Controller: b.NodeID == md.Controller})
			}
			sort.Slice(info.Brokers, func(i, j int) bool { return info.Brokers[i].ID < info.Brokers[j].ID })
			if apiVersions {
				vs, err := adm.ApiVersions(ctx)
				if err != nil {
					return o.requestErr("api versions", err)
				}
				type kmm struct{ k, min, max int16 }
				group := map[kmm][]int32{}
				for _, v := range vs.Sorted() {
					if v.Err != nil {
						return fmt.Errorf("api versions of broker %d: %s", v.NodeID, describeErr(v.Err, ""))
					}
					v.EachKeySorted(func(k, lo, hi int16) {
						group[kmm{k, lo, hi}] = append(group[kmm{k, lo, hi}], v.NodeID)
					})
				}
				for g, bs := range group {
					name := kmsg.NameForKey(g.k)
					if name == "" {
						name = "Unknown"
					}
					sort.Slice(bs, func(i, j int) bool { return bs[i] < bs[j] })
					info.APIVersions = append(info.APIVersions, apiRange{Key: g.k, Name: name, Min: g.min, Max: g.max, Brokers: bs})
				}
				sort.Slice(info.APIVersions, func(i, j int) bool {
					a, b := info.APIVersions[i], info.APIVersions[j]
					if a.Key != b.Key {
						return a.Key < b.Key
					}
					return a.Brokers[0] < b.Brokers[0]
				})
			}
			if o.json {
				return writeJSON(cmd.OutOrStdout(), info)
			}
			w := cmd.OutOrStdout()
			tw := newTable(w)
			row(tw, "CLUSTER", dash(info.ClusterID))
			ctrl := "-"
			if info.Controller >= 0 {
				ctrl = fmt.Sprint(info.Controller)
			}
			row(tw, "CONTROLLER", ctrl)
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(w)
			tw = newTable(w)
			row(tw, "ID", "HOST", "PORT", "RACK")
			for _, b := range info.Brokers {
				id := fmt.Sprint(b.ID)
				if b.Controller {
					id += "*"
				}
				rack := "-"
				if b.Rack != nil && *b.Rack != "" {
					rack = *b.Rack
				}
				row(tw, id, b.Host, b.Port, rack)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if apiVersions {
				fmt.Fprintln(w)
				same := true
				for _, a := range info.APIVersions {
					same = same && len(a.Brokers) == len(info.Brokers)
				}
				if same {
					fmt.Fprintf(w, "%d APIs, the same version ranges on every broker\n", len(info.APIVersions))
				} else {
					fmt.Fprintln(w, "the brokers differ: each row lists the brokers that serve that range")
				}
				fmt.Fprintln(w)
				tw = newTable(w)
				row(tw, "KEY", "API", "MIN", "MAX", "BROKERS")
				for _, a := range info.APIVersions {
					bs := int32List(a.Brokers)
					if len(a.Brokers) == len(info.Brokers) {
						bs = "all"
					}
					row(tw, a.Key, a.Name, a.Min, a.Max, bs)
				}
				return tw.Flush()
			}
			return nil
		},
	}
	c.Flags().BoolVar(&apiVersions, "api-versions", false, "also list the API version ranges the brokers serve")
	return c
}
