package log

// SetConfig applies a topic's changed settings to an open log, without a
// restart (AlterConfigs / IncrementalAlterConfigs): max message bytes and
// the flush settings apply from the next append, segment size and age from
// the next roll decision, index spacing and size from the next segment.
// Segments already written keep their files as they are.
func (l *Log) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
	return nil
}
