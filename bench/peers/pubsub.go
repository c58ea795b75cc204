package peers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/bench/synth"
	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// PubSubOptions shape the javaclient and pullerd peers, which both read the embedded
// emulator (pullerd/emulator) with the same streams and the same flow control.
type PubSubOptions struct {
	// PullerdBin is a built pullerd binary (BuildPullerd).
	PullerdBin string
	// Streams: StreamingPull streams (pullerd: also its partitions; the Java client:
	// parallel pull count).
	Streams int
	// MaxOutstandingMessages and MaxOutstandingBytes: the flow control of both clients.
	MaxOutstandingMessages int64
	MaxOutstandingBytes    int64
	// Backlog bounds the messages published but not yet sent on a stream: the emulator
	// (pstest) scans its whole backlog on every pull, so a deep backlog slows it.
	Backlog int64
	// WarmupMsgs (javaclient) and WarmupBatches (pullerd's ring consumer) are left out
	// of the measured window.
	WarmupMsgs    int64
	WarmupBatches int
}

// DefaultPubSubOptions are make bench's.
var DefaultPubSubOptions = PubSubOptions{Streams: 2, MaxOutstandingMessages: 10_000, MaxOutstandingBytes: 96 << 20,
	Backlog: 2_000, WarmupMsgs: 2_000, WarmupBatches: 3}

// BuildPullerd builds pullerd into dir and returns the binary's path.
func BuildPullerd(ctx context.Context, dir string) (string, error) {
	root, err := jvm.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "pullerd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./pullerd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build pullerd: %v\n%s", err, out)
	}
	return bin, nil
}

const (
	benchTopic = "bench"
	benchSub   = "bench-sub"
)

func newBenchEmulator() (*emulator.Server, error) {
	return emulator.New(emulator.Config{Topics: []string{benchTopic}, AckDeadline: 60 * time.Second,
		Subscriptions: []emulator.Subscription{{Name: benchSub, Topic: benchTopic}}})
}

// publish publishes synthetic messages (seed, size) to the bench topic for d, keeping at
// most backlog messages published but not yet sent on a stream, and returns the count
// and payload bytes published.
func publish(ctx context.Context, srv *emulator.Server, o Options, ps PubSubOptions, size int, stop <-chan struct{}) (n, bytes int64, err error) {
	src, err := synth.New(synth.Config{Seed: o.Seed, Size: size})
	if err != nil {
		return 0, 0, err
	}
	chunk := int(min(500, max(1, (8<<20)/max(size, 1))))
	end := time.Now().Add(o.Duration)
	var m arrowbatch.Message
	for time.Now().Before(end) {
		select {
		case <-stop:
			return n, bytes, errJVMExited
		case <-ctx.Done():
			return n, bytes, ctx.Err()
		default:
		}
		if n-srv.Stats().MessagesSent > ps.Backlog {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		msgs := make([]*pb.PubsubMessage, chunk)
		for i := range msgs {
			src.Next(&m)
			msgs[i] = &pb.PubsubMessage{Data: m.Data}
			bytes += int64(len(m.Data))
		}
		src.Recycle()
		if _, err := srv.Publish(ctx, benchTopic, msgs...); err != nil {
			return n, bytes, err
		}
		n += int64(chunk)
	}
	return n, bytes, nil
}

// JavaClient measures Google's Java Pub/Sub subscriber
// (dev.pubsubshm.bench.javaclient.JavaClientConsumer, bench/java/javaclient) on the
// embedded emulator: it receives, verifies every payload byte, and acks.
func JavaClient(ctx context.Context, o Options, ps PubSubOptions, size int) (res Result, err error) {
	srv, err := newBenchEmulator()
	if err != nil {
		return res, err
	}
	defer srv.Close()
	cp, err := jvm.ModuleClasspath("javaclient")
	if err != nil {
		return res, err
	}
	cmd := jvm.CommandWithClasspath(cp, o.jfrOpts("javaclient", size), "dev.pubsubshm.bench.javaclient.JavaClientConsumer",
		"--emulator", srv.Addr(), "--subscription", emulator.SubscriptionName(srv.Project(), benchSub),
		"--streams", strconv.Itoa(ps.Streams),
		"--max-outstanding-messages", strconv.FormatInt(ps.MaxOutstandingMessages, 10),
		"--max-outstanding-bytes", strconv.FormatInt(ps.MaxOutstandingBytes, 10),
		"--warmup-msgs", strconv.FormatInt(ps.WarmupMsgs, 10))
	p, err := start("JVM Java client", cmd, true)
	if err != nil {
		return res, err
	}
	defer p.kill()
	if err := waitStreams(ctx, srv, ps.Streams, p); err != nil {
		return res, err
	}
	n, bytes, err := publish(ctx, srv, o, ps, size, p.done)
	if err != nil {
		return res, fmt.Errorf("publish: %w\n%s", err, p.stderr.String())
	}
	fmt.Fprintf(p.stdin, "%d\n", n)
	if err := p.wait(ctx, 3*time.Minute); err != nil {
		return res, err
	}
	j, err := p.jvmResult()
	if err != nil {
		return res, err
	}
	if j.Msgs < n || j.Bytes < bytes {
		return res, fmt.Errorf("Java client received %d msgs / %d bytes of %d / %d published", j.Msgs, j.Bytes, n, bytes)
	}
	res = Result{Name: "javaclient", MsgSize: size}
	res.fill(j)
	res.Notes = fmt.Sprintf("Google Java subscriber, %d streams, emulator on loopback; duplicates %d", ps.Streams, j.Msgs-n)
	return res, nil
}

// Pullerd measures pullerd (a separate process, built from ./pullerd) on the embedded
// emulator, writing into its rings, with a JVM (RingBenchConsumer) reading every
// partition zero-copy, verifying every payload byte and committing each batch, which
// pullerd then acks. go_cpu_s_per_gb is pullerd's CPU.
func Pullerd(ctx context.Context, o Options, ps PubSubOptions, size int) (res Result, err error) {
	if ps.PullerdBin == "" {
		return res, errors.New("peers: PubSubOptions.PullerdBin is not set (BuildPullerd)")
	}
	srv, err := newBenchEmulator()
	if err != nil {
		return res, err
	}
	defer srv.Close()
	root, err := os.MkdirTemp("/dev/shm", "pubsub-shm-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(root)
	if err := os.Chmod(root, 0o700); err != nil {
		return res, err
	}
	pcmd := exec.Command(ps.PullerdBin, "-shm-dir", root, "-project", srv.Project(), "-subscription", benchSub,
		"-partitions", strconv.Itoa(ps.Streams), "-streams", strconv.Itoa(ps.Streams), "-stagger", "-1s",
		"-max-outstanding-messages", strconv.FormatInt(ps.MaxOutstandingMessages, 10),
		"-max-outstanding-bytes", strconv.FormatInt(ps.MaxOutstandingBytes, 10),
		"-batch-rows", strconv.Itoa(o.Policy.MaxRows), "-batch-bytes", strconv.FormatInt(o.Policy.MaxBytes, 10),
		"-linger", o.Policy.Linger.String(), "-log-level", "warn")
	pcmd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+srv.Addr())
	stdout, err := pcmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	pd, err := start("pullerd", pcmd, false)
	if err != nil {
		return res, err
	}
	defer pd.kill()
	defer func() {
		if !pd.exited() {
			pd.cmd.Process.Signal(syscall.SIGTERM)
			if werr := pd.wait(context.WithoutCancel(ctx), 30*time.Second); werr != nil && err == nil {
				err = werr
			}
		}
	}()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "pullerd ready") {
				ready <- nil
				for sc.Scan() {
				}
				return
			}
		}
		ready <- fmt.Errorf("pullerd exited before it was ready: %s", pd.stderr.String())
	}()
	select {
	case err := <-ready:
		if err != nil {
			return res, err
		}
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(time.Minute):
		return res, fmt.Errorf("pullerd not ready within a minute: %s", pd.stderr.String())
	}
	set := filepath.Join(root, srv.Project()+"."+benchSub)
	parts := make([]string, ps.Streams)
	for i := range parts {
		parts[i] = strconv.Itoa(i)
	}
	cmd, err := jvm.Command(o.jfrOpts("pullerd", size), "dev.pubsubshm.bench.RingBenchConsumer", "--dir", set,
		"--partitions", strings.Join(parts, ","), "--expect-from-stdin", "--warmup-batches", strconv.Itoa(ps.WarmupBatches), "--timeout-s", "120")
	if err != nil {
		return res, err
	}
	p, err := start("JVM ring consumer", cmd, true)
	if err != nil {
		return res, err
	}
	defer p.kill()
	if err := waitStreams(ctx, srv, ps.Streams, p); err != nil {
		return res, err
	}
	cpu0, err := procCPU(pd.cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	n, bytes, err := publish(ctx, srv, o, ps, size, p.done)
	if err != nil {
		return res, fmt.Errorf("publish: %w\n%s", err, p.stderr.String())
	}
	fmt.Fprintf(p.stdin, "%d\n", n)
	if err := p.wait(ctx, 3*time.Minute); err != nil {
		return res, fmt.Errorf("%w\npullerd: %s", err, pd.stderr.String())
	}
	cpu1, err := procCPU(pd.cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	j, err := p.jvmResult()
	if err != nil {
		return res, err
	}
	if j.Msgs < n || j.Bytes < bytes {
		return res, fmt.Errorf("ring consumer read %d msgs / %d bytes of %d / %d published", j.Msgs, j.Bytes, n, bytes)
	}
	res = Result{Name: "pullerd", MsgSize: size}
	res.fill(j)
	res.GoCPUSPerGB = ptr((cpu1 - cpu0).Seconds() / (float64(j.Bytes) / 1e9))
	res.Notes = fmt.Sprintf("pullerd -> %d rings -> one JVM thread, %d streams, emulator on loopback; duplicates %d", ps.Streams, ps.Streams, j.Msgs-n)
	return res, nil
}

// waitStreams waits until the emulator serves n streams (the consumer is subscribed).
func waitStreams(ctx context.Context, srv *emulator.Server, n int, p *proc) error {
	deadline := time.Now().Add(time.Minute)
	for srv.Stats().StreamsActive < int64(n) {
		switch {
		case p.exited():
			return fmt.Errorf("%s exited before subscribing: %v\n%s", p.name, p.err, p.stderr.String())
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return fmt.Errorf("%d of %d streams open after a minute\n%s", srv.Stats().StreamsActive, n, p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// procCPU returns the user+system CPU time of process pid (/proc/<pid>/stat).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// fields after the command: state(0) ppid(1) ... utime(11) stime(12)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat times", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100
