// Command soak runs the pipe for a long time at a target rate and checks that it holds:
// the synthetic source (bench/synth, a decimal counter id and publish_time per message,
// a CRC32C trailer per payload) -> pullerd's batch path (arrowbatch.Batcher) -> DATA rings
// in /dev/shm -> a JVM (dev.pubsubshm.bench.SoakConsumer) that loads every batch
// zero-copy, checks every payload byte and that ids run without gap or repeat, and
// commits each batch back, which this process checks off exactly once.
//
// Every second it records throughput, end-to-end latency p50/p99/p99.9 (publish_time to
// the JVM's read), JVM GC count and time, heap allocated and in use, the RSS of both
// processes, the fill of the rings and the use of /dev/shm, and shows a progress bar on
// stderr. At the end it writes <out>/soak.json and <out>/soak.png (throughput, latency
// and memory over time), prints a one-line verdict, and exits 1 if:
//
//   - the target rate was not sustained: after the warm-up, the mean throughput was
//     below (1 - tolerance) x target, or some 5-second window was below
//     (1 - 2 x tolerance) x target (tolerance: -tolerance, default 5%);
//   - any message was lost, repeated or corrupted, or a batch was not committed back
//     exactly once;
//   - memory or /dev/shm grew without bound: the peak RSS of either process, or of the
//     /dev/shm storage held by the soak's ring files, in the second half of the measured
//     seconds exceeds the first half's peak by more than 64 MiB + 10%. (The whole of
//     /dev/shm in use is recorded too, but other processes share it.)
//
// Latency is reported, not judged (the project's goal, p99 under 1 ms, is in the
// verdict line).
//
//	go run ./bench/cmd/soak -duration 60s -size 1024 -rate 1GB/s    # make soak
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

	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	fmt.Println(rep.Verdict)
	if !rep.Pass {
		os.Exit(1)
	}
}

type config struct {
	Duration   time.Duration
	Warmup     time.Duration
	Size       int
	Rate       float64
	Tolerance  float64
	Partitions int
	Capacity   int64
	Policy     arrowbatch.Policy
	Seed       int64
	JVMOpts    []string
	Out        string
	Progress   string
	CPUProfile string
	MaxPark    time.Duration
}

// reportConfig is the configuration as soak.json records it.
type reportConfig struct {
	DurationS       float64  `json:"duration_s"`
	WarmupS         float64  `json:"warmup_s"`
	MsgSize         int      `json:"msg_size"`
	TargetBytesPerS float64  `json:"target_bytes_per_s"`
	Tolerance       float64  `json:"tolerance"`
	Partitions      int      `json:"partitions"`
	RingCapacity    int64    `json:"ring_capacity"`
	BatchRows       int      `json:"batch_rows"`
	BatchBytes      int64    `json:"batch_bytes"`
	LingerUs        int64    `json:"linger_us"`
	Seed            int64    `json:"seed"`
	JVMOpts         []string `json:"jvm_opts"`
	JVMMaxParkUs    int64    `json:"jvm_max_park_us"`
}

func (c config) report() reportConfig {
	return reportConfig{DurationS: c.Duration.Seconds(), WarmupS: c.Warmup.Seconds(), MsgSize: c.Size, TargetBytesPerS: c.Rate,
		Tolerance: c.Tolerance, Partitions: c.Partitions, RingCapacity: c.Capacity, BatchRows: c.Policy.MaxRows,
		BatchBytes: c.Policy.MaxBytes, LingerUs: c.Policy.Linger.Microseconds(), Seed: c.Seed, JVMOpts: c.JVMOpts,
		JVMMaxParkUs: c.MaxPark.Microseconds()}
}

func parseFlags(args []string) (config, error) {
	cfg := config{Policy: arrowbatch.Policy{MaxRows: arrowbatch.DefaultPolicy.MaxRows, MaxBytes: 256 << 10, Linger: time.Millisecond}}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	cfg.Duration = 60 * time.Second
	fs.Var((*seconds)(&cfg.Duration), "duration", "how long the source writes (a Go duration, or plain seconds: 600)")
	fs.DurationVar(&cfg.Warmup, "warmup", 5*time.Second, "first part of the run left out of the rate and memory checks (JIT, page faults)")
	fs.IntVar(&cfg.Size, "size", 1024, "payload bytes per message (at least 4: the checksum)")
	rate := fs.String("rate", "1GB/s", "target payload rate: bytes/s, or with a unit (kB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s)")
	fs.Float64Var(&cfg.Tolerance, "tolerance", 0.05, "shortfall of the target rate still counted as sustained (fraction)")
	fs.IntVar(&cfg.Partitions, "partitions", 1, "DATA rings (one producer goroutine each; the JVM reads them all on one thread)")
	fs.Int64Var(&cfg.Capacity, "capacity", 64<<20, "bytes per DATA ring (power of two)")
	fs.IntVar(&cfg.Policy.MaxRows, "batch-rows", cfg.Policy.MaxRows, "rows per batch at most")
	fs.Int64Var(&cfg.Policy.MaxBytes, "batch-bytes", cfg.Policy.MaxBytes, "payload bytes per batch at most (smaller: lower latency, more JVM objects per message)")
	fs.DurationVar(&cfg.Policy.Linger, "linger", cfg.Policy.Linger, "longest a batch stays open")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the synthetic source (partition p uses seed+p)")
	jvmOpts := fs.String("jvm-opts", "-Xms256m -Xmx256m -XX:+AlwaysPreTouch", "options of the consumer JVM, space-separated (e.g. add -XX:StartFlightRecording=filename=bench/out/soak.jfr)")
	fs.StringVar(&cfg.Out, "out", "bench/out", "directory for soak.json and soak.png")
	fs.StringVar(&cfg.Progress, "progress", "auto", "progress display on stderr: bar, lines (one every 10 s), none, or auto (bar on a terminal)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a Go CPU profile of the producer here")
	fs.DurationVar(&cfg.MaxPark, "jvm-max-park", 100*time.Microsecond, "longest the JVM reader parks when the rings are empty (shorter: lower latency, more CPU)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	r, err := parseRate(*rate)
	if err != nil {
		return cfg, err
	}
	cfg.Rate = r
	cfg.JVMOpts = strings.Fields(*jvmOpts)
	switch {
	case cfg.Duration <= 0:
		return cfg, fmt.Errorf("-duration %v must be positive", cfg.Duration)
	case cfg.Warmup < 0 || cfg.Warmup >= cfg.Duration:
		return cfg, fmt.Errorf("-warmup %v must be in [0, -duration %v)", cfg.Warmup, cfg.Duration)
	case cfg.Size < 4:
		return cfg, fmt.Errorf("-size %d: at least 4 bytes (the checksum)", cfg.Size)
	case cfg.Partitions < 1:
		return cfg, fmt.Errorf("-partitions %d must be >= 1", cfg.Partitions)
	case cfg.Tolerance < 0 || cfg.Tolerance >= 0.5:
		return cfg, fmt.Errorf("-tolerance %v must be in [0, 0.5)", cfg.Tolerance)
	}
	switch cfg.Progress {
	case "auto", "bar", "lines", "none":
	default:
		return cfg, fmt.Errorf("-progress %q: want bar, lines, none or auto", cfg.Progress)
	}
	return cfg, nil
}

// parseRate parses "1GB/s", "500 MiB/s", "2e8".
func parseRate(s string) (float64, error) {
	t := strings.TrimSuffix(strings.ReplaceAll(strings.TrimSpace(s), " ", ""), "/s")
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad -rate %q: want a positive number of bytes/s, e.g. 1GB/s or 500MiB/s", s)
	}
	return v * mult, nil
}

// writeReport writes soak.json and soak.png.
func writeReport(cfg config, rep *Report) error {
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.Out, "soak.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return drawSoak(filepath.Join(cfg.Out, "soak.png"), cfg, rep)
}

// seconds is a flag.Value for a duration given as a Go duration ("90s", "10m") or as
// plain seconds ("600", as make soak DURATION=600 passes it).
type seconds time.Duration

// String formats the duration (flag.Value).
func (d *seconds) String() string { return time.Duration(*d).String() }

// Set parses a Go duration or plain seconds (flag.Value).
func (d *seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		*d = seconds(time.Duration(f * float64(time.Second)))
		return nil
	}
	x, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want a duration like 90s or 10m, or seconds: %w", err)
	}
	*d = seconds(x)
	return nil
}
