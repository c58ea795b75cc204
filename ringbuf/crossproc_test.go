//go:build crossproc

// The cross-process tests need the Java side built (make jvm); `make test` builds it and
// runs them with -tags crossproc.

package ringbuf

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
)

// TestCrossProcessGoToJava: this Go test process writes 100,000 RAW records of random
// sizes (1 B to 1 MiB, log-uniform) through an 8 MiB ring, across many wraps, to a real
// Java process (dev.pubsubshm.ring.tools.CheckConsumer) that verifies the checksum of every
// record and sends COMMIT records back, which this side verifies cover every batch once.
func TestCrossProcessGoToJava(t *testing.T) {
	const records = 100_000
	dir := shmDir(t)
	data, err := Create(filepath.Join(dir, "data-0.ring"), CreateOptions{Kind: KindData, Capacity: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	commit, err := Create(filepath.Join(dir, "commit.ring"), CreateOptions{Kind: KindCommit, Capacity: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	defer commit.Close()
	w, _ := NewWriter(data)
	cr, _ := NewCommitReader(commit)

	cmd, err := jvm.Command([]string{"-Xmx256m"}, "dev.pubsubshm.ring.tools.CheckConsumer",
		"--dir", dir, "--partition", "0", "--records", "100000", "--commit-every", "1000", "--timeout-s", "300")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewSource(42))
	committed := make([]bool, records+1)
	var nCommitted, payload int64
	drain := func() {
		for {
			rec, ok, err := cr.Poll()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return
			}
			if rec.Type != CommitTypeCommit || rec.Partition != 0 || rec.DataInstanceID != data.InstanceID() {
				t.Fatalf("unexpected commit record %+v (data ring instance %d)", rec, data.InstanceID())
			}
			for id := rec.FirstBatchID; id <= rec.LastBatchID; id++ {
				if id < 1 || id > records || committed[id] {
					t.Fatalf("batch %d committed twice or out of range", id)
				}
				committed[id] = true
				nCommitted++
			}
		}
	}
	start := time.Now()
	for i := 0; i < records; i++ {
		n := int(math.Exp(rng.Float64() * math.Log(1<<20)))
		c, err := w.Claim(ctx, TypeRaw, 0, n, nil)
		if err != nil {
			t.Fatalf("record %d: %v (java stderr: %s)", i, err, stderr.String())
		}
		fillPayload(c.Body(), w.NextBatchID(), 99)
		if _, err := c.Commit(1); err != nil {
			t.Fatal(err)
		}
		payload += int64(n)
		if i%256 == 0 {
			w.Heartbeat()
			drain()
		}
	}
	w.Close()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("java consumer: %v\nstderr: %s", err, stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("java consumer did not finish; stderr: %s", stderr.String())
	}
	elapsed := time.Since(start)
	drain()
	var sum struct {
		Records          int64 `json:"records"`
		Bytes            int64 `json:"bytes"`
		ChecksumFailures int64 `json:"checksum_failures"`
		FirstBatchID     int64 `json:"first_batch_id"`
		LastBatchID      int64 `json:"last_batch_id"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &sum); err != nil {
		t.Fatalf("java summary %q: %v", stdout.String(), err)
	}
	if sum.Records != records || sum.Bytes != payload || sum.ChecksumFailures != 0 || sum.FirstBatchID != 1 || sum.LastBatchID != records {
		t.Fatalf("java saw %+v; wrote %d records, %d bytes", sum, records, payload)
	}
	if nCommitted != records {
		t.Fatalf("%d of %d batches committed back", nCommitted, records)
	}
	if data.Head() != data.Tail() {
		t.Errorf("java left %d bytes unreleased", data.Tail()-data.Head())
	}
	if wraps := data.Tail() / data.Capacity(); wraps < 100 {
		t.Errorf("only %d wraps", wraps)
	}
	t.Logf("%d records, %.1f MB in %v (%.0f MB/s), %d wraps", records, float64(payload)/1e6, elapsed.Round(time.Millisecond),
		float64(payload)/1e6/elapsed.Seconds(), data.Tail()/data.Capacity())
	data.Unlink()
	commit.Unlink()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files left: %v", ents)
	}
}
