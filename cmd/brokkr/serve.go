package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/brokkr/brokkr"
	"github.com/brokkr/brokkr/core/config"
	"github.com/spf13/cobra"
)

func newServeCmd() *cobra.Command {
	var (
		configFile string
		overrides  []string
		logLevel   string
		stopAfter  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a broker",
		Long: `Runs a Brokkr broker. With no arguments it is a single-node broker on
localhost:9092 with its data in ./brokkr-data and an embedded coordination
store, creating topics on first use.

Configuration is a Kafka server.properties file (--config) with Kafka's key
names and defaults, and --override key=value on top. An unknown or invalid
key stops the broker before it starts, with file:line and what is wrong.
SIGTERM or SIGINT shut it down cleanly: stop accepting, finish in-flight
requests, flush, write checkpoints and the clean-shutdown marker.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			began := time.Now()
			cfg, err := config.Load(configFile, overrides)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("configuration:\n%v", err)}
			}
			for i, d := range cfg.LogDirs {
				if abs, err := filepath.Abs(d); err == nil {
					cfg.LogDirs[i] = abs
				}
			}
			level := slog.LevelInfo
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)}
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			out := cmd.OutOrStdout()

			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv := &brokkr.Server{Config: cfg, Logger: logger}
			startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err = srv.Start(startCtx)
			cancel()
			if err != nil {
				return &exitError{code: 1, err: errors.New(oneLine(err.Error()))}
			}
			b := srv.Broker()
			for name, a := range b.Addrs() {
				fmt.Fprintf(out, "brokkr: listening on %s://%s (advertised %s)\n", name, a, strings.Join(b.Advertised(), ","))
			}
			fmt.Fprintf(out, "brokkr: data in %s\n", strings.Join(cfg.LogDirs, ","))
			fmt.Fprintf(out, "brokkr: coordination %s, cluster %s, node %d\n", cfg.CoordinationSpec(), b.ClusterID(), cfg.NodeID)
			fmt.Fprintf(out, "brokkr: ready in %s (broker start %s)\n", time.Since(began).Round(time.Millisecond), b.ReadyIn().Round(time.Millisecond))

			if stopAfter > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(stopAfter):
				}
			} else {
				<-ctx.Done()
			}
			stop()
			fmt.Fprintln(out, "brokkr: shutting down")
			shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			start := time.Now()
			if err := srv.Close(shutCtx); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("shutdown: %v", err)}
			}
			fmt.Fprintf(out, "brokkr: stopped cleanly in %s\n", time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "a Kafka-style properties file")
	cmd.Flags().StringArrayVar(&overrides, "override", nil, "key=value, applied over the file (repeatable)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().DurationVar(&stopAfter, "stop-after", 0, "shut down cleanly after this long (for tests and demos)")
	return cmd
}
