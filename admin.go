package brokkr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/brokkr/brokkr/core/broker"
	"github.com/brokkr/brokkr/netio"
	"github.com/brokkr/brokkr/plugins/host"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// admin is the HTTP listener of brokkr.admin.listener: /metrics in
// Prometheus form (a private registry: never the global one), /livez (the
// process is up) and /readyz (the broker started and serves).
type admin struct {
	srv *http.Server
	ln  net.Listener
}

func startAdmin(addr string, b *broker.Broker, pluginStatus func() []host.Status) (*admin, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	nm := func(f func(m netio.Metrics) uint64) func() float64 {
		return func() float64 { return float64(f(b.NetMetrics())) }
	}
	counter("brokkr_network_connections_accepted_total", "Client connections accepted.", nm(func(m netio.Metrics) uint64 { return m.ConnectionsAccepted }))
	counter("brokkr_network_connections_closed_total", "Client connections closed.", nm(func(m netio.Metrics) uint64 { return m.ConnectionsClosed }))
	counter("brokkr_network_requests_total", "Request frames received with a valid header.", nm(func(m netio.Metrics) uint64 { return m.RequestsReceived }))
	counter("brokkr_network_frames_too_large_total", "Size prefixes above socket.request.max.bytes (connection closed).", nm(func(m netio.Metrics) uint64 { return m.FramesTooLarge }))
	counter("brokkr_network_unknown_api_keys_total", "Requests with an API key no Kafka version defines (connection closed).", nm(func(m netio.Metrics) uint64 { return m.UnknownAPIKeys }))
	counter("brokkr_network_malformed_headers_total", "Request headers that did not parse (connection closed).", nm(func(m netio.Metrics) uint64 { return m.MalformedHeaders }))
	counter("brokkr_network_panics_recovered_total", "Handler panics caught at the connection boundary.", nm(func(m netio.Metrics) uint64 { return m.PanicsRecovered }))
	counter("brokkr_network_idle_closes_total", "Connections closed by connections.max.idle.ms.", nm(func(m netio.Metrics) uint64 { return m.IdleCloses }))
	counter("brokkr_network_sendfile_bytes_total", "Record bytes sent zero-copy with sendfile.", nm(func(m netio.Metrics) uint64 { return m.SendfileBytes }))
	counter("brokkr_network_copy_fallback_bytes_total", "Record bytes copied through user space where zero-copy was impossible.", nm(func(m netio.Metrics) uint64 { return m.CopyFallbackBytes }))
	st := b.Stats()
	counter("brokkr_requests_unsupported_api_total", "Requests for an API key Brokkr does not serve (connection closed).", func() float64 { return float64(st.UnknownAPIKey.Load()) })
	counter("brokkr_requests_unsupported_version_total", "Requests outside the advertised version range.", func() float64 { return float64(st.UnsupportedVersion.Load()) })
	counter("brokkr_requests_malformed_total", "Request bodies that did not parse (connection closed).", func() float64 { return float64(st.MalformedRequest.Load()) })
	counter("brokkr_retention_policy_failures_total", "Retention checks where the policy failed or answered nonsense; nothing was deleted.", func() float64 { return float64(st.RetentionFailures.Load()) })
	counter("brokkr_retention_segments_deleted_total", "Segments deleted by retention.", func() float64 { return float64(st.RetentionSegmentsDeleted.Load()) })
	registerPolicyMetrics(reg, b, pluginStatus)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kafka_server_replicamanager_partitioncount", Help: "Partitions hosted by this broker."}, func() float64 { return float64(b.PartitionCount()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kafka_server_kafkaserver_brokerstate", Help: "3 = running."}, func() float64 { return 3 }))

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	ready := func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") }
	mux.HandleFunc("/readyz", ready)
	mux.HandleFunc("/v1/status/ready", ready)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("brokkr.admin.listener %s: %w", addr, err)
	}
	a := &admin{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener died; /livez stops answering, which is the signal
		}
	}()
	return a, nil
}

func (a *admin) close(ctx context.Context) error { return a.srv.Shutdown(ctx) }

// registerPolicyMetrics exports the log cleaner (with Kafka's JMX names as a
// JMX exporter renders them), policy faults, per-partition dirty bytes and
// the plugin processes, from one collector: a scrape reads the cleaner's
// state once.
func registerPolicyMetrics(reg *prometheus.Registry, b *broker.Broker, pluginStatus func() []host.Status) {
	reg.MustRegister(&policyCollector{b: b, pluginStatus: pluginStatus})
}

// cleanerMetric is one unlabelled cleaner series and how to read it.
type cleanerMetric struct {
	desc  *prometheus.Desc
	vt    prometheus.ValueType
	value func(m broker.CleanerMetrics) float64
}

var cleanerMetrics = []cleanerMetric{
	{prometheus.NewDesc("kafka_log_logcleaner_deadthreadcount", "Log cleaner threads dead right now (a dead thread is restarted after a back-off).", nil, nil),
		prometheus.GaugeValue, func(m broker.CleanerMetrics) float64 { return float64(m.DeadThreads) }},
	{prometheus.NewDesc("kafka_log_logcleanermanager_time_since_last_run_ms", "Milliseconds since a log cleaner pass last ended.", nil, nil),
		prometheus.GaugeValue, func(m broker.CleanerMetrics) float64 { return float64(m.TimeSinceLastRunMs) }},
	{prometheus.NewDesc("kafka_log_logcleanermanager_uncleanable_partitions_count", "Compacted partitions whose last cleaning failed.", nil, nil),
		prometheus.GaugeValue, func(m broker.CleanerMetrics) float64 { return float64(m.UncleanablePartitions) }},
	{prometheus.NewDesc("kafka_log_logcleaner_max_dirty_percent", "Largest dirty ratio, in percent, of the compacted partitions at the last cleaner pass.", nil, nil),
		prometheus.GaugeValue, func(m broker.CleanerMetrics) float64 { return m.MaxDirtyPercent }},
	{prometheus.NewDesc("brokkr_log_cleaner_threads", "Log cleaner threads configured (0 when log.cleaner.enable=false).", nil, nil),
		prometheus.GaugeValue, func(m broker.CleanerMetrics) float64 { return float64(m.Threads) }},
	{prometheus.NewDesc("brokkr_log_cleaner_panics_total", "Panics recovered in the log cleaner.", nil, nil),
		prometheus.CounterValue, func(m broker.CleanerMetrics) float64 { return float64(m.Panics) }},
	{prometheus.NewDesc("brokkr_log_cleaner_cleanings_total", "Successful cleanings.", nil, nil),
		prometheus.CounterValue, func(m broker.CleanerMetrics) float64 { return float64(m.Cleanings) }},
	{prometheus.NewDesc("brokkr_log_cleaner_failures_total", "Failed cleanings (retried with back-off).", nil, nil),
		prometheus.CounterValue, func(m broker.CleanerMetrics) float64 { return float64(m.Failures) }},
}

var (
	descPolicyFaults = prometheus.NewDesc("brokkr_policy_faults_total",
		"Policy faults (error, panic, time-out, refused answer, plugin unavailable); nothing was deleted.", []string{"topic", "policy", "kind"}, nil)
	descDirtyBytes = prometheus.NewDesc("brokkr_log_cleaner_dirty_bytes",
		"Dirty (not yet cleaned, cleanable) bytes of a compacted partition at the last cleaner pass.", []string{"topic", "partition"}, nil)
	descPluginUp       = prometheus.NewDesc("brokkr_plugin_up", "1 while the plugin's process runs.", []string{"plugin"}, nil)
	descPluginCalls    = prometheus.NewDesc("brokkr_plugin_calls_total", "Calls sent to the plugin.", []string{"plugin"}, nil)
	descPluginFaults   = prometheus.NewDesc("brokkr_plugin_faults_total", "Plugin crashes, time-outs, transport errors, failed health checks and refused answers.", []string{"plugin"}, nil)
	descPluginRestarts = prometheus.NewDesc("brokkr_plugin_restarts_total", "Plugin process starts after the first.", []string{"plugin"}, nil)
)

// policyCollector exports the labelled policy metrics at scrape time.
type policyCollector struct {
	b            *broker.Broker
	pluginStatus func() []host.Status
}

func (c *policyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range cleanerMetrics {
		ch <- m.desc
	}
	for _, d := range []*prometheus.Desc{descPolicyFaults, descDirtyBytes, descPluginUp, descPluginCalls, descPluginFaults, descPluginRestarts} {
		ch <- d
	}
}

func (c *policyCollector) Collect(ch chan<- prometheus.Metric) {
	cm := c.b.CleanerMetrics()
	for _, m := range cleanerMetrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.vt, m.value(cm))
	}
	for _, f := range c.b.PolicyFaults() {
		ch <- prometheus.MustNewConstMetric(descPolicyFaults, prometheus.CounterValue, float64(f.Count), f.Topic, f.Policy, string(f.Kind))
	}
	for _, d := range c.b.CleanerDirtyBytes() {
		ch <- prometheus.MustNewConstMetric(descDirtyBytes, prometheus.GaugeValue, float64(d.Bytes), d.Topic, strconv.Itoa(int(d.Partition)))
	}
	if c.pluginStatus == nil {
		return
	}
	for _, s := range c.pluginStatus() {
		up := 0.0
		if s.Running {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descPluginUp, prometheus.GaugeValue, up, s.Name)
		ch <- prometheus.MustNewConstMetric(descPluginCalls, prometheus.CounterValue, float64(s.Calls), s.Name)
		ch <- prometheus.MustNewConstMetric(descPluginFaults, prometheus.CounterValue, float64(s.Faults), s.Name)
		ch <- prometheus.MustNewConstMetric(descPluginRestarts, prometheus.CounterValue, float64(s.Restarts), s.Name)
	}
}
