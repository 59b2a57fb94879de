package group

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Config holds the group settings, named as Kafka's broker configs.
type Config struct {
	// MinSessionTimeout is group.min.session.timeout.ms (default 6000 ms).
	MinSessionTimeout time.Duration
	// MaxSessionTimeout is group.max.session.timeout.ms (default 1800000 ms).
	MaxSessionTimeout time.Duration
	// InitialRebalanceDelay is group.initial.rebalance.delay.ms (default 3000 ms).
	InitialRebalanceDelay time.Duration
	// MaxSize is group.max.size (default 2147483647).
	MaxSize int
}

// DefaultConfig returns Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		MinSessionTimeout:     6000 * time.Millisecond,
		MaxSessionTimeout:     1800000 * time.Millisecond,
		InitialRebalanceDelay: 3000 * time.Millisecond,
		MaxSize:               math.MaxInt32,
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.MinSessionTimeout < 0 {
		errs = append(errs, fmt.Errorf("group.min.session.timeout.ms: %d must not be negative", c.MinSessionTimeout.Milliseconds()))
	}
	if c.MaxSessionTimeout < c.MinSessionTimeout {
		errs = append(errs, fmt.Errorf("group.max.session.timeout.ms: %d is below group.min.session.timeout.ms %d",
			c.MaxSessionTimeout.Milliseconds(), c.MinSessionTimeout.Milliseconds()))
	}
	if c.InitialRebalanceDelay < 0 {
		errs = append(errs, fmt.Errorf("group.initial.rebalance.delay.ms: %d must not be negative", c.InitialRebalanceDelay.Milliseconds()))
	}
	if c.MaxSize < 1 {
		errs = append(errs, fmt.Errorf("group.max.size: %d must be at least 1", c.MaxSize))
	}
	return errors.Join(errs...)
}
