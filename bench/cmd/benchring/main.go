// Command benchring measures the ring alone: the synthetic source writes Arrow batches
// into a DATA ring (exactly as pullerd does), and a separate JVM
// (dev.pubsubshm.bench.RingBenchConsumer) loads each batch zero-copy into Arrow Java,
// verifies the checksum of every payload byte, releases the batch and commits it back.
// One JSON object per message size goes to stdout and to -out. It is the shm peer of
// make bench (bench/peers.Shm) run on its own.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/peers"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

type config struct {
	sizes []int
	out   string
	opts  peers.Options
}

func main() {
	cfg := config{opts: peers.DefaultOptions}
	sizes := flag.String("sizes", "100,1024,16384", "message payload sizes in bytes, comma-separated")
	flag.DurationVar(&cfg.opts.Duration, "duration", 5*time.Second, "how long the generator writes per size")
	flag.Int64Var(&cfg.opts.Capacity, "capacity", 64<<20, "data ring capacity in bytes (power of two)")
	flag.IntVar(&cfg.opts.Policy.MaxRows, "batch-rows", arrowbatch.DefaultPolicy.MaxRows, "rows per batch at most")
	flag.Int64Var(&cfg.opts.Policy.MaxBytes, "batch-bytes", arrowbatch.DefaultPolicy.MaxBytes, "payload bytes per batch at most")
	flag.DurationVar(&cfg.opts.Policy.Linger, "linger", arrowbatch.DefaultPolicy.Linger, "longest a batch stays open")
	flag.StringVar(&cfg.out, "out", "bench/out/ring.json", "file for the JSON lines (also printed)")
	jvmOpts := flag.String("jvm-opts", "-Xmx1g -Xms1g", "extra JVM options for the consumer, space-separated (e.g. -XX:StartFlightRecording=filename=bench/out/ring.jfr)")
	flag.Int64Var(&cfg.opts.Seed, "seed", 1, "generator seed")
	flag.Float64Var(&cfg.opts.Rate, "rate", 0, "target payload bytes/s (0 = as fast as possible)")
	cpuProf := flag.String("cpuprofile", "", "write Go CPU profiles of the generator here (one per size: <path>-shm-<size>.pprof)")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "benchring: bad -sizes entry %q\n", s)
			os.Exit(2)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	cfg.opts.JVMOpts = strings.Fields(*jvmOpts)
	cfg.opts.CPUProfile = *cpuProf
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "benchring:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	var lines []byte
	for _, size := range cfg.sizes {
		res, err := peers.Shm(ctx, cfg.opts, size)
		if err != nil {
			return fmt.Errorf("size %d: %w", size, err)
		}
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
		lines = append(append(lines, b...), '\n')
	}
	if cfg.out != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(cfg.out, lines, 0o644)
	}
	return nil
}
