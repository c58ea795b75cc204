// Command pullerd is the pubsub-shm sidecar: one per Spark executor host. It pulls Pub/Sub
// subscriptions with StreamingPull, writes the messages as Arrow IPC batches into
// shared-memory rings under $PUBSUB_SHM_DIR (default /dev/shm/pubsub-shm-<uid>), and
// acknowledges them when the JVM reader writes COMMIT records (docs/FORMAT.md). It also
// publishes what Spark writes: a JVM writer asks for an OUTBOUND ring (op attach_topic on
// the control socket), fills it with Arrow batches, and reads each batch's outcome in a
// RESULTS ring (docs/FORMAT.md section 6).
//
// It honours PUBSUB_EMULATOR_HOST (plaintext, no credentials) like Google's clients.
// SIGINT or SIGTERM shut it down cleanly: uncommitted messages are nacked and the ring
// sets removed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pubsub-shm/pubsub-shm/pullerd/internal/daemon"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// subList collects repeated -subscription flags (each may also be comma-separated).
type subList []string

// String joins the subscriptions with commas (flag.Value).
func (s *subList) String() string { return strings.Join(*s, ",") }

// Set adds one flag value, which may list several subscriptions (flag.Value).
func (s *subList) Set(v string) error {
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*s = append(*s, x)
		}
	}
	return nil
}

func main() {
	cfg, logLevel, logFormat, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "pullerd:", err)
		os.Exit(2)
	}
	log, err := newLogger(logLevel, logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pullerd:", err)
		os.Exit(2)
	}
	defer log.Sync()
	cfg.Log = log
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		log.Error("pullerd failed", zap.Error(err))
		log.Sync()
		os.Exit(1)
	}
}

// run runs pullerd until ctx ends. It prints the control socket and the metrics address on
// stdout once it serves ("pullerd ready control=... metrics=...").
func run(ctx context.Context, cfg daemon.Config) error {
	cfg.Ready = func(sock, metrics string) {
		fmt.Printf("pullerd ready control=%s metrics=%s\n", sock, metrics)
	}
	return daemon.Run(ctx, cfg)
}

func parseFlags(args []string) (cfg daemon.Config, logLevel, logFormat string, err error) {
	fs := flag.NewFlagSet("pullerd", flag.ContinueOnError)
	cores := runtime.NumCPU()
	var subs subList
	project := fs.String("project", os.Getenv("GOOGLE_CLOUD_PROJECT"), "project of bare -subscription ids (default $GOOGLE_CLOUD_PROJECT)")
	fs.Var(&subs, "subscription", "subscription to attach at start: an id (with -project) or projects/<p>/subscriptions/<s>; repeatable, comma-separated")
	fs.StringVar(&cfg.Dir, "shm-dir", ringbuf.DefaultDir(), "root directory of the ring sets (default $PUBSUB_SHM_DIR or /dev/shm/pubsub-shm-<uid>)")
	fs.IntVar(&cfg.Partitions, "partitions", 2*cores, "virtual partitions (DATA rings) per subscription")
	fs.IntVar(&cfg.Streams, "streams", 2*cores, "StreamingPull streams per subscription (never more than -partitions)")
	fs.IntVar(&cfg.StreamBudget, "stream-budget", daemon.DefaultStreamBudget, "project-wide stream budget (active_streaming_pull_connections quota) shared by -hosts hosts")
	fs.IntVar(&cfg.Hosts, "hosts", 1, "number of pullerd hosts sharing -stream-budget: streams per host = min(-streams, budget/hosts)")
	fs.DurationVar(&cfg.Stagger, "stagger", daemon.DefaultStagger, "random delay in [0, stagger) before each stream's first open (negative: none)")
	fs.Int64Var(&cfg.RingCapacity, "ring-capacity", daemon.DefaultRingCapacity, "bytes per DATA ring (power of two)")
	fs.Int64Var(&cfg.CommitRingCapacity, "commit-ring-capacity", daemon.DefaultCommitRingCapacity, "bytes of the COMMIT ring (power of two; 64 bytes per record)")
	fs.Int64Var(&cfg.MaxOutstandingMessages, "max-outstanding-messages", daemon.DefaultMaxOutstandingMsgs, "messages a subscription may hold unacked before its streams stop reading")
	fs.Int64Var(&cfg.MaxOutstandingBytes, "max-outstanding-bytes", 0, "payload bytes a subscription may hold unacked before its streams stop reading (0: 3/4 of partitions x ring capacity)")
	fs.IntVar(&cfg.Batch.MaxRows, "batch-rows", arrowbatch.DefaultPolicy.MaxRows, "rows per Arrow batch at most")
	fs.Int64Var(&cfg.Batch.MaxBytes, "batch-bytes", arrowbatch.DefaultPolicy.MaxBytes, "payload bytes per Arrow batch at most (capped at ring capacity / 8)")
	fs.DurationVar(&cfg.Batch.Linger, "linger", arrowbatch.DefaultPolicy.Linger, "longest wait after a batch's first row before it is written")
	fs.DurationVar(&cfg.AckDeadline, "ack-deadline", daemon.DefaultAckDeadline, "lease requested and extended for held messages (10s-600s)")
	fs.DurationVar(&cfg.ReaderTimeout, "reader-timeout", daemon.DefaultReaderTimeout, "a reader whose heartbeat is older is dead")
	fs.DurationVar(&cfg.ReaderGrace, "reader-grace", daemon.DefaultReaderGrace, "wait after a reader is found dead before nacking its uncommitted batches and recreating its ring")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", daemon.DefaultMetricsAddr, "loopback host:port of the Prometheus /metrics endpoint (port 0: any; the address is printed and written to metrics.addr)")
	fs.BoolVar(&cfg.MetricsRemote, "metrics-remote", false, "allow a -metrics-addr that is not loopback (e.g. :9464, for Prometheus to scrape a pod); the endpoint serves /metrics only")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", daemon.DefaultShutdownTimeout, "bound on the acks and nacks sent at shutdown")
	fs.DurationVar(&cfg.Publish.Linger, "publish-linger", daemon.DefaultPublishLinger, "write path: longest wait after a Publish request's first message before it is sent")
	fs.Int64Var(&cfg.Publish.MaxRequestBytes, "publish-max-bytes", daemon.DefaultPublishRequestBytes, "write path: a Publish request is sent when it would pass this many encoded bytes (at most 10000000; also at most 1000 messages)")
	fs.IntVar(&cfg.Publish.MaxInflight, "publish-max-inflight", daemon.DefaultPublishInflight, "write path: Publish requests in flight per writer")
	fs.Int64Var(&cfg.Publish.MaxOutstandingBytes, "publish-max-outstanding-bytes", daemon.DefaultPublishOutstandingByte, "write path: flow control, encoded bytes of the Publish requests in flight over all writers")
	fs.DurationVar(&cfg.Publish.RetryTimeout, "publish-retry-timeout", daemon.DefaultPublishRetryTimeout, "write path: retry a Publish that fails with UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, INTERNAL or DEADLINE_EXCEEDED (back-off with jitter) for at most this long")
	fs.Int64Var(&cfg.Publish.OutboundRingCapacity, "outbound-ring-capacity", daemon.DefaultOutboundRingCapacity, "write path: bytes of a writer's OUTBOUND ring (power of two) unless the writer asks for another size")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "json", "json or console")
	if err := fs.Parse(args); err != nil {
		return cfg, "", "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", "", fmt.Errorf("unexpected arguments %q (flags only)", fs.Args())
	}
	for _, s := range subs {
		sub, err := daemon.ParseSub(s, *project)
		if err != nil {
			return cfg, "", "", fmt.Errorf("-subscription: %w", err)
		}
		cfg.Subscriptions = append(cfg.Subscriptions, sub)
	}
	return cfg, logLevel, logFormat, nil
}

func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("-log-level %q: %w", level, err)
	}
	var zc zap.Config
	switch format {
	case "json":
		zc = zap.NewProductionConfig()
	case "console":
		zc = zap.NewDevelopmentConfig()
	default:
		return nil, fmt.Errorf("-log-format %q: want json or console", format)
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	return zc.Build()
}
