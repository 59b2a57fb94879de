package config

// Topic config names that pick a topic's policies (see docs/plugins.md).
const (
	// RetentionPluginKey names the retention plugin binary in
	// brokkr.plugin.dir; unset = the built-in time and size retention.
	RetentionPluginKey = "brokkr.retention.plugin"
	// CompactionPluginKey names the compaction plugin binary; unset = the
	// built-in keep-latest-per-key compaction.
	CompactionPluginKey = "brokkr.compaction.plugin"
	// PluginSettingPrefix starts a plugin's own settings:
	// brokkr.plugin.<name>.<key>=<value>.
	PluginSettingPrefix = "brokkr.plugin."
	// StatusPrefix starts the read-only status names DescribeConfigs answers
	// only when asked for them by name (never a config a client may set).
	StatusPrefix = "brokkr.status."
)
