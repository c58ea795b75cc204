// Package peers runs the transports that make bench compares, each fed the same synthetic
// messages (bench/synth, same seed): the project's ring (shm), an Arrow IPC stream over a
// Unix domain socket (uds), Arrow Flight DoGet on loopback (flight), the machine's copy
// bandwidth for the same bytes (memcpy), and, on the embedded Pub/Sub emulator, Google's
// Java subscriber (javaclient) against pullerd -> ring -> JVM (pullerd). Every JVM
// consumer verifies every payload byte (CRC32C trailer, bench/synth) and reports the same
// measurements (dev.pubsubshm.bench.common.BenchTally); each run is bounded in time.
package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// Options common to every peer.
type Options struct {
	// Duration the producer writes per run (the pubsub peers: publishes).
	Duration time.Duration
	// Seed of the synthetic source.
	Seed int64
	// Policy closes batches for every Arrow peer (shm, uds, flight, pullerd), so that they
	// carry the same batches.
	Policy arrowbatch.Policy
	// Capacity of the shm peer's data ring, and the memcpy peer's destination.
	Capacity int64
	// JVMOpts are extra options for every consumer JVM (e.g. -Xmx1g).
	JVMOpts []string
	// Rate of the shm peer in payload bytes per second (0: as fast as possible).
	Rate float64
	// CPUProfile, if set, is a path prefix for Go CPU profiles of the producer side
	// (<prefix>-<peer>-<size>.pprof).
	CPUProfile string
	// JFR, if set, is a path prefix for Java Flight Recordings of the consumer JVMs
	// (<prefix>-<peer>-<size>.jfr).
	JFR string
}

// DefaultOptions are make bench's.
var DefaultOptions = Options{Duration: 3 * time.Second, Seed: 1, Policy: arrowbatch.DefaultPolicy, Capacity: 64 << 20,
	JVMOpts: []string{"-Xmx1g", "-Xms1g"}}

// Result is one JSON line of make bench: one peer at one message size. Fields that do not
// apply to a peer are null (no JVM in memcpy, no Go producer in javaclient, ...).
type Result struct {
	Name    string `json:"name"`
	MsgSize int    `json:"msg_size"`
	Msgs    int64  `json:"msgs"`
	Bytes   int64  `json:"bytes"`
	Batches int64  `json:"batches"`
	// Throughput over the measured window (after the consumer's warm-up).
	MsgsPerS  float64 `json:"msgs_per_s"`
	BytesPerS float64 `json:"bytes_per_s"`
	// Heap allocated by every JVM thread per message, measured window.
	JVMAllocBytesPerMsg *float64 `json:"jvm_alloc_bytes_per_msg"`
	JVMGCCount          *int64   `json:"jvm_gc_count"`
	JVMGCTimeMs         *int64   `json:"jvm_gc_time_ms"`
	// CPU seconds of the whole consumer JVM per GB of payload.
	JVMCPUSPerGB *float64 `json:"jvm_cpu_s_per_gb"`
	// CPU seconds of the Go side per GB of payload (producer, or pullerd).
	GoCPUSPerGB  *float64 `json:"go_cpu_s_per_gb"`
	P50LatencyUs *float64 `json:"p50_latency_us"`
	P99LatencyUs *float64 `json:"p99_latency_us"`
	// ChecksumFailures counts payloads whose CRC32C did not hold (a failed run is an error
	// before a Result exists; the field is kept for benchring's format).
	ChecksumFailures     int64 `json:"checksum_failures"`
	BatchesCommittedBack int64 `json:"batches_committed_back,omitempty"`

	// Ratios against shm at the same size, each as "how many times better shm is":
	// shm bytes/s over this bytes/s, this heap/msg over shm's, this JVM CPU/GB over shm's.
	ShmThroughputX *float64 `json:"shm_throughput_x,omitempty"`
	ShmAllocX      *float64 `json:"shm_alloc_x,omitempty"`
	ShmCPUX        *float64 `json:"shm_cpu_x,omitempty"`
	// The same against pullerd, on the javaclient line.
	PullerdThroughputX *float64 `json:"pullerd_throughput_x,omitempty"`
	PullerdAllocX      *float64 `json:"pullerd_alloc_x,omitempty"`
	PullerdCPUX        *float64 `json:"pullerd_cpu_x,omitempty"`

	// Notes says what bounded or shaped the run, for the reader of the table.
	Notes string `json:"notes,omitempty"`
}

// JVMResult is the line every bench consumer JVM prints (BenchTally, RingBenchConsumer).
type JVMResult struct {
	Msgs                 int64   `json:"msgs"`
	Bytes                int64   `json:"bytes"`
	Batches              int64   `json:"batches"`
	MeasuredMsgs         int64   `json:"measured_msgs"`
	MeasuredBytes        int64   `json:"measured_bytes"`
	ElapsedNs            int64   `json:"elapsed_ns"`
	AllocBytes           int64   `json:"alloc_bytes"`
	AllocBytesAllThreads int64   `json:"alloc_bytes_all_threads"`
	GCCount              int64   `json:"gc_count"`
	GCTimeMs             int64   `json:"gc_time_ms"`
	CPUNs                int64   `json:"cpu_ns"`
	ChecksumFailures     int64   `json:"checksum_failures"`
	P50LatencyUs         float64 `json:"p50_latency_us"`
	P99LatencyUs         float64 `json:"p99_latency_us"`
	P999LatencyUs        float64 `json:"p999_latency_us"`
}

// fill sets r's throughput and JVM fields from the consumer's measured window.
func (r *Result) fill(j JVMResult) {
	sec := float64(j.ElapsedNs) / 1e9
	r.Msgs, r.Bytes, r.Batches = j.Msgs, j.Bytes, j.Batches
	if sec > 0 {
		r.MsgsPerS = float64(j.MeasuredMsgs) / sec
		r.BytesPerS = float64(j.MeasuredBytes) / sec
	}
	alloc := float64(j.AllocBytesAllThreads) / float64(max(j.MeasuredMsgs, 1))
	r.JVMAllocBytesPerMsg = &alloc
	r.JVMGCCount, r.JVMGCTimeMs = ptr(j.GCCount), ptr(j.GCTimeMs)
	if j.MeasuredBytes > 0 {
		r.JVMCPUSPerGB = ptr(float64(j.CPUNs) / 1e9 / (float64(j.MeasuredBytes) / 1e9))
	}
	r.P50LatencyUs, r.P99LatencyUs = ptr(j.P50LatencyUs), ptr(j.P99LatencyUs)
	r.ChecksumFailures = j.ChecksumFailures
}

func ptr[T any](v T) *T { return &v }

// cpuTime returns this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// proc is a started child process whose stdout and stderr are collected.
type proc struct {
	cmd    *exec.Cmd
	name   string
	stdout bytes.Buffer
	stderr syncBuffer
	stdin  io.WriteCloser
	done   chan struct{}
	err    error
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start starts cmd. With withStdin, p.stdin is a pipe to the process.
func start(name string, cmd *exec.Cmd, withStdin bool) (*proc, error) {
	p := &proc{cmd: cmd, name: name, done: make(chan struct{})}
	if cmd.Stdout == nil { // a caller that took StdoutPipe reads stdout itself
		cmd.Stdout = &p.stdout
	}
	cmd.Stderr = &p.stderr
	if withStdin {
		w, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		p.stdin = w
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to end (at most timeout, then kills it) and returns its
// error with its stderr.
func (p *proc) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.kill()
		return ctx.Err()
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not finish within %v\n%s", p.name, timeout, p.stderr.String())
	}
	if p.err != nil {
		return fmt.Errorf("%s: %v\n%s", p.name, p.err, p.stderr.String())
	}
	return nil
}

// kill ends the process if it still runs and waits for it.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// jvmResult parses the last line of the process's stdout.
func (p *proc) jvmResult() (JVMResult, error) {
	var j JVMResult
	out := strings.TrimSpace(p.stdout.String())
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		return j, fmt.Errorf("%s output %q: %v (stderr %s)", p.name, p.stdout.String(), err, p.stderr.String())
	}
	return j, nil
}

// errJVMExited is returned when a consumer JVM ends before the producer is done.
var errJVMExited = errors.New("peers: consumer JVM exited early")

// jfrOpts returns the JVM options recording a flight recording for peer at size, if
// o.JFR is set.
func (o Options) jfrOpts(peer string, size int) []string {
	opts := append([]string{}, o.JVMOpts...)
	if o.JFR != "" {
		opts = append(opts, fmt.Sprintf("-XX:StartFlightRecording=filename=%s-%s-%d.jfr,settings=profile", o.JFR, peer, size))
	}
	return opts
}

// profile starts a Go CPU profile for peer at size if o.CPUProfile is set, and returns
// the function that stops it.
func (o Options) profile(peer string, size int) (stop func(), err error) {
	if o.CPUProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(fmt.Sprintf("%s-%s-%d.pprof", o.CPUProfile, peer, size))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
