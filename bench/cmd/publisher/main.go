// Command publisher publishes sample traffic to a Pub/Sub topic (the embedded emulator
// through PUBSUB_EMULATOR_HOST, for `make run`): JSON-ish payloads of about -size bytes
// with attributes and, optionally, ordering keys, at -rate messages per second, until
// -count messages were published or it is stopped (SIGINT/SIGTERM). It prints one line
// per second with the messages published so far.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

type config struct {
	project, topic string
	rate           float64
	size           int
	count          int64
	orderingKeys   int
}

func main() {
	var c config
	flag.StringVar(&c.project, "project", "demo", "project id")
	flag.StringVar(&c.topic, "topic", "events", "topic id")
	flag.Float64Var(&c.rate, "rate", 2000, "messages per second (0 = as fast as possible)")
	flag.IntVar(&c.size, "size", 256, "approximate payload bytes")
	flag.Int64Var(&c.count, "count", 0, "messages to publish (0 = until stopped)")
	flag.IntVar(&c.orderingKeys, "ordering-keys", 0, "distinct ordering keys (0 = none)")
	flag.Parse()
	if os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
		fmt.Fprintln(os.Stderr, "publisher: PUBSUB_EMULATOR_HOST is not set; this tool only talks to an emulator")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	client, err := pubsub.NewClient(ctx, c.project)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", os.Getenv("PUBSUB_EMULATOR_HOST"), err)
	}
	defer client.Close()
	pub := client.Publisher(c.topic)
	pub.EnableMessageOrdering = c.orderingKeys > 0
	defer pub.Stop()
	pad := strings.Repeat("x", max(0, c.size-96))
	start := time.Now()
	lastReport := start
	var sent int64
	var results []*pubsub.PublishResult
	for c.count == 0 || sent < c.count {
		if ctx.Err() != nil {
			break
		}
		now := time.Now()
		data := `{"seq":` + strconv.FormatInt(sent, 10) + `,"ts":"` + now.UTC().Format(time.RFC3339Nano) + `","user":"u` +
			strconv.FormatInt(sent%97, 10) + `","pad":"` + pad + `"}`
		m := &pubsub.Message{Data: []byte(data), Attributes: map[string]string{"source": "make-run", "kind": []string{"click", "view", "buy"}[sent%3]}}
		if c.orderingKeys > 0 {
			m.OrderingKey = "k" + strconv.FormatInt(sent%int64(c.orderingKeys), 10)
		}
		results = append(results, pub.Publish(ctx, m))
		sent++
		if len(results) >= 1000 {
			for _, r := range results {
				if _, err := r.Get(ctx); err != nil {
					return fmt.Errorf("publish: %w", err)
				}
			}
			results = results[:0]
		}
		if c.rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(sent) / c.rate * float64(time.Second)))); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
		if time.Since(lastReport) >= time.Second {
			fmt.Printf("publisher: %d messages published to %s\n", sent, c.topic)
			lastReport = time.Now()
		}
	}
	for _, r := range results {
		if _, err := r.Get(context.Background()); err != nil && ctx.Err() == nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	fmt.Printf("publisher: done, %d messages published to %s\n", sent, c.topic)
	return ctx.Err()
}
