// Command embed starts a Brokkr broker inside a Go program, produces a few
// records to it with franz-go and reads them back, then shuts the broker
// down cleanly. Everything lives in a temporary directory.
//
//	go run ./examples/embed
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/brokkr/brokkr"
	"github.com/brokkr/brokkr/core/config"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "brokkr-embed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Set fields, then Start.
	cfg := config.DefaultConfig()
	cfg.Listeners = []string{"PLAINTEXT://127.0.0.1:0"} // any free port
	cfg.LogDirs = []string{dir}
	srv := &brokkr.Server{Config: cfg}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer func() {
		shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(shut); err != nil {
			log.Print(err)
		}
	}()
	addr := srv.Addr("PLAINTEXT").String()
	fmt.Println("broker listening on", addr)

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("greetings"), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeTopics("greetings"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, v := range []string{"hello", "from", "an embedded broker"} {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(v)).FirstErr(); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
	}
	for n := 0; n < 3; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("consume: %w", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			fmt.Printf("offset %d: %s\n", r.Offset, r.Value)
			n++
		})
	}
	return nil
}
