package ringbuf

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCommitRingManyWriters(t *testing.T) {
	r := testRing(t, KindCommit, 4096) // 64 slots: writers hit back-pressure constantly
	cr, _ := NewCommitReader(r)
	const writers, per = 4, 5000
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			cw, _ := NewCommitWriter(r)
			for i := 1; i <= per; i++ {
				err := cw.Write(ctx, CommitRecord{Type: CommitTypeCommit, Partition: int32(g), FirstBatchID: int64(i), LastBatchID: int64(i), DataInstanceID: 42}, Yield{})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	next := make([]int64, writers)
	for i := range next {
		next[i] = 1
	}
	got := 0
	for got < writers*per {
		rec, ok, err := cr.Poll()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if ctx.Err() != nil {
				t.Fatalf("timed out after %d records", got)
			}
			continue
		}
		// Per writer, records arrive in the order written.
		if rec.FirstBatchID != next[rec.Partition] || rec.DataInstanceID != 42 || rec.Type != CommitTypeCommit {
			t.Fatalf("writer %d: got batch %d, want %d (%+v)", rec.Partition, rec.FirstBatchID, next[rec.Partition], rec)
		}
		next[rec.Partition]++
		got++
	}
	wg.Wait()
	if _, ok, _ := cr.Poll(); ok {
		t.Error("extra record")
	}
}

func TestCommitRingFullAndBadRange(t *testing.T) {
	r := testRing(t, KindCommit, 4096)
	cw, _ := NewCommitWriter(r)
	rec := CommitRecord{Type: CommitTypeNack, Partition: 1, FirstBatchID: 3, LastBatchID: 4, DataInstanceID: 7}
	for i := 0; i < 64; i++ {
		if err := cw.TryWrite(rec); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := cw.TryWrite(rec); !errors.Is(err, ErrFull) {
		t.Fatalf("65th record in a 64-slot ring: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := cw.Write(ctx, rec, nil); !errors.Is(err, ErrFull) {
		t.Fatalf("Write on full ring: %v", err)
	}
	if err := cw.TryWrite(CommitRecord{Type: CommitTypeCommit, FirstBatchID: 5, LastBatchID: 4, DataInstanceID: 7}); err == nil {
		t.Fatal("inverted range accepted")
	}
}

// TestCommitRingAbandonedSlot: a producer that claimed a slot and died (or stalled past
// the unblock timeout) does not stall the ring, and a stalled producer's late publish
// fails so it writes the record again.
func TestCommitRingAbandonedSlot(t *testing.T) {
	r := testRing(t, KindCommit, 4096)
	cr, _ := NewCommitReader(r)
	cr.UnblockTimeout = 30 * time.Millisecond
	cw, _ := NewCommitWriter(r)
	// Claim by hand, as a producer that dies right after its tail CAS.
	atomic.AddInt64(r.i64(TailOffset), CommitRecordLength)
	// and one that stored -64 and stalled.
	atomic.AddInt64(r.i64(TailOffset), CommitRecordLength)
	atomic.StoreInt32(r.i32(r.area(64)+CmtLengthOffset), -CommitRecordLength)
	good := CommitRecord{Type: CommitTypeRelease, Partition: 2, FirstBatchID: 9, LastBatchID: 9, DataInstanceID: 5}
	if err := cw.TryWrite(good); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		rec, ok, err := cr.Poll()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if rec.Type != CommitTypeRelease || rec.FirstBatchID != 9 || rec.Position != 128 {
				t.Fatalf("got %+v", rec)
			}
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("abandoned slots stalled the ring")
		}
		time.Sleep(time.Millisecond)
	}
	if cr.Unblocked() != 2 {
		t.Errorf("unblocked %d slots, want 2", cr.Unblocked())
	}
	// The stalled producer wakes up: its publish CAS on slot 64 must fail.
	if atomic.CompareAndSwapInt32(r.i32(r.area(64)+CmtLengthOffset), -CommitRecordLength, CommitRecordLength) {
		t.Error("a stalled producer could publish into an abandoned slot")
	}
}

func TestCommitRecordValidation(t *testing.T) {
	le := binary.LittleEndian
	valid := func() []byte {
		b := make([]byte, 64)
		le.PutUint32(b[CmtLengthOffset:], 64)
		le.PutUint32(b[CmtTypeOffset:], 1)
		le.PutUint64(b[CmtPositionOffset:], 640)
		le.PutUint64(b[CmtFirstOffset:], 1)
		le.PutUint64(b[CmtLastOffset:], 2)
		le.PutUint64(b[CmtInstanceIDOffset:], 3)
		return b
	}
	if _, err := ParseCommitRecord("x", valid(), 640); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		mutate func(b []byte)
		field  string
	}{
		"type":      {func(b []byte) { le.PutUint32(b[CmtTypeOffset:], 77) }, "type=77"},
		"position":  {func(b []byte) { le.PutUint64(b[CmtPositionOffset:], 0) }, "position=0"},
		"range":     {func(b []byte) { le.PutUint64(b[CmtFirstOffset:], 5) }, "first_batch_id"},
		"zero":      {func(b []byte) { le.PutUint64(b[CmtFirstOffset:], 0) }, "first_batch_id"},
		"partition": {func(b []byte) { le.PutUint32(b[CmtPartitionOffset:], 0x80000000) }, "partition"},
		"instance":  {func(b []byte) { le.PutUint64(b[CmtInstanceIDOffset:], 0) }, "data_ring_instance_id"},
	} {
		b := valid()
		c.mutate(b)
		_, err := ParseCommitRecord("x", b, 640)
		if !errors.Is(err, ErrCorruptRecord) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A corrupt record in the ring is reported once and consumed: the ring goes on.
	r := testRing(t, KindCommit, 4096)
	cw, _ := NewCommitWriter(r)
	cr, _ := NewCommitReader(r)
	cw.TryWrite(CommitRecord{Type: CommitTypeCommit, FirstBatchID: 1, LastBatchID: 1, DataInstanceID: 1})
	cw.TryWrite(CommitRecord{Type: CommitTypeCommit, FirstBatchID: 2, LastBatchID: 2, DataInstanceID: 1})
	le.PutUint32(r.mem[r.area(0)+CmtTypeOffset:], 99)
	if _, _, err := cr.Poll(); !errors.Is(err, ErrCorruptRecord) {
		t.Fatalf("corrupt record: %v", err)
	}
	rec, ok, err := cr.Poll()
	if !ok || err != nil || rec.FirstBatchID != 2 {
		t.Fatalf("after corrupt record: %+v %v %v", rec, ok, err)
	}
}
