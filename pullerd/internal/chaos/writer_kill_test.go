package chaos

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// tmpShmDir returns a fresh 0700 directory for ring files (under a chaos ring root).
func tmpShmDir(t *testing.T) string {
	return shmRoot(t)
}

// startHelper starts a helper process and waits for its "claimed <pos>" line.
func startHelper(t *testing.T, name string, args ...string) (*proc, int64) {
	t.Helper()
	p := startProc(t, name, t.TempDir(), helperCmd(t, -1, name, args...))
	l, _ := p.waitLine(t, 0, 30*time.Second, "the claim", func(l string) bool {
		return strings.HasPrefix(l, "claimed ") || strings.HasPrefix(l, "error:")
	})
	if !strings.HasPrefix(l, "claimed ") {
		t.Fatalf("helper %s: %s", name, l)
	}
	pos, _ := strconv.ParseInt(strings.TrimPrefix(l, "claimed "), 10, 64)
	return p, pos
}

// TestWriterKilledBetweenClaimAndCommit: a real producer process publishes 20 records of a
// DATA ring, claims the 21st (negative length, half its payload written) and is killed
// with SIGKILL. While it lives, the reader waits at the claim (it never skips a live
// producer's record); once it is dead, the reader marks the record RELEASED|ABORTED, skips
// it, and head moves past everything: the ring is whole again, no byte of the half-written
// record was handed out.
func TestWriterKilledBetweenClaimAndCommit(t *testing.T) {
	dir := tmpShmDir(t)
	path := filepath.Join(dir, "data-0.ring")
	ring, err := ringbuf.Create(path, ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ring.Unlink(); ring.Close() }()
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		t.Fatal(err)
	}
	rd.DeadProducerTimeout = 2 * time.Second
	helper, claimPos := startHelper(t, "claim-and-hang", path, "20")

	var positions []int64
	poll := func() (int, error) {
		n := 0
		for {
			rec, ok, err := rd.Poll()
			if err != nil || !ok {
				return n, err
			}
			if rec.BatchID != int64(len(positions)+1) || len(rec.Body) != 1000 || rec.Body[999] != byte(len(positions)) {
				t.Fatalf("record %d: batch %d, %d bytes, last byte %d", len(positions), rec.BatchID, len(rec.Body), rec.Body[len(rec.Body)-1])
			}
			positions = append(positions, rec.Position)
			n++
		}
	}
	// The producer is alive: 20 records, then the reader waits at the claim.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := poll(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(positions) != 20 || rd.Skipped() != 0 || rd.Position() != claimPos {
		t.Fatalf("with the producer alive: read %d records, skipped %d, cursor %d; want 20, 0, at the claim %d",
			len(positions), rd.Skipped(), rd.Position(), claimPos)
	}
	for _, p := range positions {
		if err := rd.Release(p); err != nil {
			t.Fatal(err)
		}
	}
	if ring.Head() != claimPos {
		t.Fatalf("head %d after releasing everything before the claim at %d", ring.Head(), claimPos)
	}

	helper.kill()
	deadline = time.Now().Add(30 * time.Second)
	for rd.Skipped() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the half-written record of the killed producer was not skipped within 30 s (cursor %d, tail %d)", rd.Position(), ring.Tail())
		}
		if n, err := poll(); err != nil || n != 0 {
			t.Fatalf("after the kill: %d records, %v; want none", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rd.Skipped() != 1 || rd.Position() != ring.Tail() || ring.Head() != ring.Tail() {
		t.Fatalf("after the skip: skipped %d, cursor %d, head %d, tail %d; want 1 and all at the tail", rd.Skipped(), rd.Position(), ring.Head(), ring.Tail())
	}
	if alive, why := ring.PeerAlive(ringbuf.Producer, time.Minute); alive || !strings.Contains(why, "is gone") {
		t.Fatalf("producer liveness after SIGKILL: %v %q", alive, why)
	}
}

// TestCommitWriterKilledBetweenClaimAndPublish: a real process publishes 5 COMMIT records,
// claims the 6th slot (length -64) and is killed. The consumer (ackd's reader) delivers the
// 5, waits at the claim for the unblock timeout, abandons the slot, and goes on with the
// records a live producer writes after it: a dead JVM cannot stall the commits of others.
func TestCommitWriterKilledBetweenClaimAndPublish(t *testing.T) {
	dir := tmpShmDir(t)
	path := filepath.Join(dir, "commit.ring")
	ring, err := ringbuf.Create(path, ringbuf.CreateOptions{Kind: ringbuf.KindCommit, Capacity: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ring.Unlink(); ring.Close() }()
	cr, err := ringbuf.NewCommitReader(ring)
	if err != nil {
		t.Fatal(err)
	}
	cr.UnblockTimeout = time.Second
	helper, claimPos := startHelper(t, "commit-claim-and-hang", path, "5")
	helper.kill()

	cw, err := ringbuf.NewCommitWriter(ring)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(100); i < 103; i++ {
		if err := cw.TryWrite(ringbuf.CommitRecord{Type: ringbuf.CommitTypeCommit, FirstBatchID: i, LastBatchID: i, DataInstanceID: 7}); err != nil {
			t.Fatal(err)
		}
	}
	var got []int64
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the consumer got batches %v (unblocked %d, head %d, claim at %d)", got, cr.Unblocked(), ring.Head(), claimPos)
		}
		rec, ok, err := cr.Poll()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		got = append(got, rec.FirstBatchID)
	}
	want := []int64{1, 2, 3, 4, 5, 100, 101, 102}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("batches %v, want %v", got, want)
		}
	}
	if cr.Unblocked() != 1 || ring.Head() != ring.Tail() {
		t.Fatalf("unblocked %d (want 1), head %d, tail %d", cr.Unblocked(), ring.Head(), ring.Tail())
	}
}
