//go:build crossproc

package arrowbatch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/bench/synth"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// TestCrossProcessArrowZeroCopy: 100,000 messages of 1 KiB go from this Go process through
// a DATA ring into a real JVM (RingBenchConsumer) that loads every batch into Arrow Java
// vectors and fails unless every buffer of every vector lies inside the ring mapping
// (zero-copy), every payload checksum holds, the Arrow allocator ends at zero, and the
// JVM heap allocated per message stays under 1 byte.
func TestCrossProcessArrowZeroCopy(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "arrowbatch-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	schema, _ := arrowbatch.SchemaMessage()
	data, err := ringbuf.Create(filepath.Join(dir, "data-0.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: 64 << 20, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	commit, err := ringbuf.Create(filepath.Join(dir, "commit.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindCommit, Capacity: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	defer commit.Close()
	w, _ := ringbuf.NewWriter(data)
	cr, _ := ringbuf.NewCommitReader(commit)
	bt, err := arrowbatch.NewBatcher(w, arrowbatch.DefaultPolicy, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := synth.New(synth.Config{Seed: 3, Size: 1024, Attributes: 2, OrderingKeys: 4})

	cmd, err := jvm.Command([]string{"-Xmx512m"}, "dev.pubsubshm.bench.RingBenchConsumer",
		"--dir", dir, "--partition", "0", "--timeout-s", "120", "--check-zero-copy", "--max-alloc-per-msg", "1.0")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var m arrowbatch.Message
	batches := 0
	// One warm-up batch (class loading and JIT in the JVM are not measured), then 100,000
	// measured messages.
	const warmup = 1000
	for i := 0; i < warmup; i++ {
		src.Next(&m)
		bt.Add(ctx, m)
	}
	if _, err := bt.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	src.Recycle()
	batches++
	for i := 0; i < 100_000; i++ {
		src.Next(&m)
		f, err := bt.Add(ctx, m)
		if err != nil {
			cmd.Process.Kill()
			t.Fatalf("%v (java: %s)", err, stderr.String())
		}
		if f.Rows > 0 {
			src.Recycle()
			batches++
		}
	}
	if f, err := bt.Flush(ctx); err != nil || f.Rows == 0 {
		t.Fatal(err)
	}
	batches++
	w.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("JVM consumer: %v\n%s", err, stderr.String())
		}
	case <-ctx.Done():
		cmd.Process.Kill()
		t.Fatalf("JVM consumer did not finish: %s", stderr.String())
	}
	var res struct {
		Msgs, Bytes, Batches, AllocBytes, MeasuredMsgs int64
	}
	var raw map[string]float64
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &raw); err != nil {
		t.Fatalf("%q: %v", stdout.String(), err)
	}
	res.Msgs, res.Bytes, res.Batches, res.AllocBytes, res.MeasuredMsgs = int64(raw["msgs"]), int64(raw["bytes"]), int64(raw["batches"]), int64(raw["alloc_bytes"]), int64(raw["measured_msgs"])
	if res.Msgs != warmup+100_000 || res.MeasuredMsgs != 100_000 || res.Bytes != src.Bytes() || res.Batches != int64(batches) {
		t.Fatalf("JVM read %+v, wrote %d msgs (100000 measured) / %d bytes / %d batches", res, warmup+100_000, src.Bytes(), batches)
	}
	committed := int64(0)
	for {
		rec, ok, err := cr.Poll()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		committed += rec.LastBatchID - rec.FirstBatchID + 1
	}
	if committed != int64(batches) || data.Head() != data.Tail() {
		t.Fatalf("committed %d of %d batches; %d bytes unreleased", committed, batches, data.Tail()-data.Head())
	}
	t.Logf("JVM heap allocation: %d bytes for %d messages (%.3f B/msg), %d batches", res.AllocBytes, res.MeasuredMsgs, float64(res.AllocBytes)/float64(res.MeasuredMsgs), batches)
	data.Unlink()
	commit.Unlink()
}
