// Command benchring measures the ring alone: the synthetic source writes Arrow batches
// into a DATA ring (exactly as pullerd does), and a separate JVM
// (dev.pubsubshm.bench.RingBenchConsumer) loads each batch zero-copy into Arrow Java,
// verifies the checksum of every payload byte, releases the batch and commits it back.
// One JSON object per message size goes to stdout and to -out.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/bench/synth"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

type config struct {
	sizes    []int
	duration time.Duration
	capacity int64
	policy   arrowbatch.Policy
	out      string
	jvmOpts  []string
	seed     int64
	rate     float64
	cpuProf  string
}

func main() {
	var cfg config
	sizes := flag.String("sizes", "100,1024,16384", "message payload sizes in bytes, comma-separated")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "how long the generator writes per size")
	flag.Int64Var(&cfg.capacity, "capacity", 64<<20, "data ring capacity in bytes (power of two)")
	flag.IntVar(&cfg.policy.MaxRows, "batch-rows", arrowbatch.DefaultPolicy.MaxRows, "rows per batch at most")
	flag.Int64Var(&cfg.policy.MaxBytes, "batch-bytes", arrowbatch.DefaultPolicy.MaxBytes, "payload bytes per batch at most")
	flag.DurationVar(&cfg.policy.Linger, "linger", arrowbatch.DefaultPolicy.Linger, "longest a batch stays open")
	flag.StringVar(&cfg.out, "out", "bench/out/ring.json", "file for the JSON lines (also printed)")
	jvmOpts := flag.String("jvm-opts", "-Xmx1g -Xms1g", "extra JVM options for the consumer, space-separated (e.g. -XX:StartFlightRecording=filename=bench/out/ring.jfr)")
	flag.Int64Var(&cfg.seed, "seed", 1, "generator seed")
	flag.Float64Var(&cfg.rate, "rate", 0, "target payload bytes/s (0 = as fast as possible)")
	flag.StringVar(&cfg.cpuProf, "cpuprofile", "", "write a Go CPU profile of the generator here")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "benchring: bad -sizes entry %q\n", s)
			os.Exit(2)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	cfg.jvmOpts = strings.Fields(*jvmOpts)
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
		res, err := runSize(ctx, cfg, size)
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

// jvmResult is what RingBenchConsumer prints.
type jvmResult struct {
	Msgs             int64   `json:"msgs"`
	Bytes            int64   `json:"bytes"`
	Batches          int64   `json:"batches"`
	MeasuredMsgs     int64   `json:"measured_msgs"`
	MeasuredBytes    int64   `json:"measured_bytes"`
	ElapsedNs        int64   `json:"elapsed_ns"`
	AllocBytes       int64   `json:"alloc_bytes"`
	GCCount          int64   `json:"gc_count"`
	GCTimeMs         int64   `json:"gc_time_ms"`
	CPUNs            int64   `json:"cpu_ns"`
	ChecksumFailures int64   `json:"checksum_failures"`
	P50LatencyUs     float64 `json:"p50_latency_us"`
	P99LatencyUs     float64 `json:"p99_latency_us"`
}

// Result is one JSON line.
type Result struct {
	Name                 string  `json:"name"`
	MsgSize              int     `json:"msg_size"`
	Msgs                 int64   `json:"msgs"`
	Bytes                int64   `json:"bytes"`
	Batches              int64   `json:"batches"`
	MsgsPerS             float64 `json:"msgs_per_s"`
	BytesPerS            float64 `json:"bytes_per_s"`
	JVMAllocBytesPerMsg  float64 `json:"jvm_alloc_bytes_per_msg"`
	JVMGCCount           int64   `json:"jvm_gc_count"`
	JVMGCTimeMs          int64   `json:"jvm_gc_time_ms"`
	JVMCPUSPerGB         float64 `json:"jvm_cpu_s_per_gb"`
	GoCPUSPerGB          float64 `json:"go_cpu_s_per_gb"`
	P50LatencyUs         float64 `json:"p50_latency_us"`
	P99LatencyUs         float64 `json:"p99_latency_us"`
	ChecksumFailures     int64   `json:"checksum_failures"`
	BatchesCommittedBack int64   `json:"batches_committed_back"`
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runSize(ctx context.Context, cfg config, size int) (res Result, err error) {
	root := ringbuf.DefaultDir()
	if err := ringbuf.EnsureDir(root); err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp(root, "benchring-")
	if err != nil {
		return res, err
	}
	defer os.Remove(root) // only if empty: pullerd may share it
	defer os.RemoveAll(dir)
	schema, err := arrowbatch.SchemaMessage()
	if err != nil {
		return res, err
	}
	data, err := ringbuf.Create(filepath.Join(dir, "data-0.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: cfg.capacity, Schema: schema})
	if err != nil {
		return res, err
	}
	defer data.Close()
	commit, err := ringbuf.Create(filepath.Join(dir, "commit.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindCommit, Capacity: 1 << 20})
	if err != nil {
		return res, err
	}
	defer commit.Close()
	w, err := ringbuf.NewWriter(data)
	if err != nil {
		return res, err
	}
	cr, err := ringbuf.NewCommitReader(commit)
	if err != nil {
		return res, err
	}
	bt, err := arrowbatch.NewBatcher(w, cfg.policy, ringbuf.Yield{})
	if err != nil {
		return res, err
	}
	src, err := synth.New(synth.Config{Seed: cfg.seed, Size: size, Rate: cfg.rate})
	if err != nil {
		return res, err
	}

	cmd, err := jvm.Command(cfg.jvmOpts, "dev.pubsubshm.bench.RingBenchConsumer", "--dir", dir, "--partition", "0", "--timeout-s", "120")
	if err != nil {
		return res, err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start JVM consumer: %w", err)
	}
	exited := make(chan error, 1)
	jvmDone := make(chan struct{})
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		err := cmd.Wait()
		exited <- err
		close(jvmDone)
		if err != nil {
			cancel(fmt.Errorf("JVM consumer failed: %v\n%s", err, stderr.String()))
		}
	}()
	defer func() {
		select {
		case <-jvmDone:
		default:
			cmd.Process.Kill()
			<-jvmDone
		}
	}()
	// Wait for the consumer to attach (JVM start-up is not measured).
	for data.Peer(ringbuf.Consumer).Pid == 0 {
		select {
		case err := <-exited:
			return res, fmt.Errorf("JVM consumer exited before attaching: %v\n%s", err, stderr.String())
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	var committed int64
	drain := func() error {
		for {
			rec, ok, err := cr.Poll()
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			committed += rec.LastBatchID - rec.FirstBatchID + 1
		}
	}
	cpu0 := cpuTime()
	end := time.Now().Add(cfg.duration)
	var m arrowbatch.Message
	for i := 0; ; i++ {
		if i&1023 == 0 {
			if time.Now().After(end) {
				break
			}
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			w.Heartbeat()
			if err := drain(); err != nil {
				return res, err
			}
		}
		src.Next(&m)
		f, err := bt.Add(ctx, m)
		if err != nil {
			if c := context.Cause(ctx); c != nil {
				return res, c
			}
			return res, err
		}
		if f.Rows > 0 {
			src.Recycle()
		}
		src.Pace()
	}
	if _, err := bt.Flush(ctx); err != nil {
		if c := context.Cause(ctx); c != nil {
			return res, c
		}
		return res, err
	}
	w.Close()
	goCPU := cpuTime() - cpu0
	select {
	case err := <-exited:
		if err != nil {
			return res, fmt.Errorf("JVM consumer failed: %v\n%s", err, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		return res, errors.New("JVM consumer did not finish within 2 minutes")
	}
	if err := drain(); err != nil {
		return res, err
	}
	var jr jvmResult
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &jr); err != nil {
		return res, fmt.Errorf("JVM consumer output %q: %v (stderr %s)", stdout.String(), err, stderr.String())
	}
	if jr.Msgs != src.Count() || jr.Bytes != src.Bytes() {
		return res, fmt.Errorf("JVM consumer read %d msgs / %d bytes, generator wrote %d / %d", jr.Msgs, jr.Bytes, src.Count(), src.Bytes())
	}
	if jr.ChecksumFailures != 0 {
		return res, fmt.Errorf("%d payloads failed their checksum", jr.ChecksumFailures)
	}
	if committed != jr.Batches {
		return res, fmt.Errorf("JVM committed %d batches back, read %d", committed, jr.Batches)
	}
	if data.Head() != data.Tail() {
		return res, fmt.Errorf("JVM left %d bytes unreleased", data.Tail()-data.Head())
	}
	sec := float64(jr.ElapsedNs) / 1e9
	gb := float64(jr.MeasuredBytes) / 1e9
	res = Result{Name: "shm", MsgSize: size, Msgs: jr.Msgs, Bytes: jr.Bytes, Batches: jr.Batches,
		MsgsPerS: float64(jr.MeasuredMsgs) / sec, BytesPerS: float64(jr.MeasuredBytes) / sec,
		JVMAllocBytesPerMsg: float64(jr.AllocBytes) / float64(max(jr.MeasuredMsgs, 1)),
		JVMGCCount:          jr.GCCount, JVMGCTimeMs: jr.GCTimeMs,
		JVMCPUSPerGB: float64(jr.CPUNs) / 1e9 / gb, GoCPUSPerGB: goCPU.Seconds() / (float64(jr.Bytes) / 1e9),
		P50LatencyUs: jr.P50LatencyUs, P99LatencyUs: jr.P99LatencyUs,
		ChecksumFailures: jr.ChecksumFailures, BatchesCommittedBack: committed}
	data.Unlink()
	commit.Unlink()
	return res, nil
}
