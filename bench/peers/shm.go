package peers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/bench/synth"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// Shm measures the project's ring alone: the synthetic source writes Arrow batches into a
// DATA ring exactly as pullerd does (arrowbatch.Batcher), and a separate JVM
// (dev.pubsubshm.bench.RingBenchConsumer) loads each batch zero-copy into Arrow Java,
// verifies the checksum of every payload byte, releases the batch and commits it back.
// The ring files are removed when it returns.
func Shm(ctx context.Context, o Options, size int) (res Result, err error) {
	root := ringbuf.DefaultDir()
	if err := ringbuf.EnsureDir(root); err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp(root, "bench-shm-")
	if err != nil {
		return res, err
	}
	defer os.Remove(root) // only if empty: pullerd may share it
	defer os.RemoveAll(dir)
	schema, err := arrowbatch.SchemaMessage()
	if err != nil {
		return res, err
	}
	data, err := ringbuf.Create(filepath.Join(dir, "data-0.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: o.Capacity, Schema: schema})
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
	bt, err := arrowbatch.NewBatcher(w, o.Policy, ringbuf.Yield{})
	if err != nil {
		return res, err
	}
	src, err := synth.New(synth.Config{Seed: o.Seed, Size: size, Rate: o.Rate})
	if err != nil {
		return res, err
	}
	// The warm-up covers a full ring: batches written while the JVM was still starting
	// would otherwise count their wait in the latency percentiles.
	warmup := strconv.FormatInt(o.Capacity/max(o.Policy.MaxBytes, 1)+1, 10)
	cmd, err := jvm.Command(o.jfrOpts("shm", size), "dev.pubsubshm.bench.RingBenchConsumer", "--dir", dir, "--partition", "0",
		"--timeout-s", "120", "--warmup-batches", warmup)
	if err != nil {
		return res, err
	}
	p, err := start("JVM consumer", cmd, false)
	if err != nil {
		return res, err
	}
	defer p.kill()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		<-p.done
		if p.err != nil {
			cancel(fmt.Errorf("JVM consumer failed: %v\n%s", p.err, p.stderr.String()))
		}
	}()
	// Wait for the consumer to attach (JVM start-up is not measured).
	for data.Peer(ringbuf.Consumer).Pid == 0 {
		if p.exited() {
			return res, fmt.Errorf("JVM consumer exited before attaching: %v\n%s", p.err, p.stderr.String())
		}
		select {
		case <-ctx.Done():
			return res, context.Cause(ctx)
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
	stopProf, err := o.profile("shm", size)
	if err != nil {
		return res, err
	}
	cpu0 := cpuTime()
	// The run lasts o.Duration from the consumer's first release: a JVM that attached but
	// is still loading classes must not eat into the measured time.
	var end time.Time
	firstRelease := time.Now().Add(2 * time.Minute)
	var m arrowbatch.Message
	for i := 0; ; i++ {
		if i&1023 == 0 {
			now := time.Now()
			if end.IsZero() {
				if data.Head() > 0 {
					end = now.Add(o.Duration)
				} else if now.After(firstRelease) {
					stopProf()
					return res, fmt.Errorf("JVM consumer released nothing in 2 minutes\n%s", p.stderr.String())
				}
			} else if now.After(end) {
				break
			}
			if ctx.Err() != nil {
				stopProf()
				return res, context.Cause(ctx)
			}
			w.Heartbeat()
			if err := drain(); err != nil {
				stopProf()
				return res, err
			}
		}
		src.Next(&m)
		f, err := bt.Add(ctx, m)
		if err != nil {
			stopProf()
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
		stopProf()
		if c := context.Cause(ctx); c != nil {
			return res, c
		}
		return res, err
	}
	w.Close()
	goCPU := cpuTime() - cpu0
	stopProf()
	if err := p.wait(context.WithoutCancel(ctx), 2*time.Minute); err != nil {
		return res, err
	}
	if err := drain(); err != nil {
		return res, err
	}
	j, err := p.jvmResult()
	if err != nil {
		return res, err
	}
	if j.Msgs != src.Count() || j.Bytes != src.Bytes() {
		return res, fmt.Errorf("JVM consumer read %d msgs / %d bytes, generator wrote %d / %d", j.Msgs, j.Bytes, src.Count(), src.Bytes())
	}
	if j.ChecksumFailures != 0 {
		return res, fmt.Errorf("%d payloads failed their checksum", j.ChecksumFailures)
	}
	if committed != j.Batches {
		return res, fmt.Errorf("JVM committed %d batches back, read %d", committed, j.Batches)
	}
	if data.Head() != data.Tail() {
		return res, errors.New("JVM left bytes unreleased in the ring")
	}
	res = Result{Name: "shm", MsgSize: size}
	res.fill(j)
	res.GoCPUSPerGB = ptr(goCPU.Seconds() / (float64(j.Bytes) / 1e9))
	res.BatchesCommittedBack = committed
	data.Unlink()
	commit.Unlink()
	return res, nil
}
