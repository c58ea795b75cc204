package arrowbatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// TestBatcherPolicy: a batch closes on its row count, its byte size or its linger time,
// whichever comes first, and Flushed reports exactly the rows added since the last flush.
func TestBatcherPolicy(t *testing.T) {
	r := testRing(t, 1<<20)
	w, _ := ringbuf.NewWriter(r)
	rd, _ := ringbuf.NewReader(r)
	ctx := context.Background()
	bt, err := NewBatcher(w, Policy{MaxRows: 10, MaxBytes: 1000, Linger: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	small := Message{ID: "i", Data: make([]byte, 9)} // 10 payload bytes
	// Rows: the 11th add flushes the first 10.
	for i := 0; i < 10; i++ {
		if f, _ := bt.Add(ctx, small); f.Rows != 0 {
			t.Fatalf("flushed early at row %d", i)
		}
	}
	f, err := bt.Add(ctx, small)
	if err != nil || f.Rows != 10 || f.BatchID != 1 || f.Bytes != 100 {
		t.Fatalf("row limit: %+v %v", f, err)
	}
	// Bytes: 1 pending (10 B) + a 995 B message exceeds 1000: flush the 1 first.
	f, _ = bt.Add(ctx, Message{ID: "i", Data: make([]byte, 994)})
	if f.Rows != 1 || f.BatchID != 2 {
		t.Fatalf("byte limit: %+v", f)
	}
	// A message larger than MaxBytes goes alone.
	f, _ = bt.Add(ctx, Message{ID: "i", Data: make([]byte, 5000)})
	if f.Rows != 1 || f.BatchID != 3 {
		t.Fatalf("oversized message: %+v", f)
	}
	if bt.Pending() != 1 {
		t.Fatalf("pending %d", bt.Pending())
	}
	// Linger: not due at once, due after the linger time.
	if bt.Due(time.Now()) {
		t.Fatal("due before linger")
	}
	if !bt.Due(time.Now().Add(60*time.Millisecond)) || bt.Deadline().IsZero() {
		t.Fatal("not due after linger")
	}
	f, _ = bt.Flush(ctx)
	if f.Rows != 1 || f.BatchID != 4 || bt.Pending() != 0 || !bt.Deadline().IsZero() {
		t.Fatalf("flush: %+v", f)
	}
	if f, _ := bt.Flush(ctx); f.Rows != 0 {
		t.Fatal("empty flush wrote a batch")
	}
	rows := []int32{10, 1, 1, 1}
	for i, want := range rows {
		rec, ok, err := rd.Poll()
		if !ok || err != nil || rec.RowCount != want || rec.BatchID != int64(i+1) {
			t.Fatalf("record %d: %+v %v %v", i, rec, ok, err)
		}
	}
	if _, err := NewBatcher(w, Policy{MaxRows: 0, MaxBytes: 1, Linger: time.Second}, nil); err == nil || !strings.Contains(err.Error(), "positive") {
		t.Errorf("zero MaxRows: %v", err)
	}
	if _, err := NewBatcher(w, Policy{MaxRows: 1, MaxBytes: 1 << 30, Linger: time.Second}, nil); err == nil || !strings.Contains(err.Error(), "max record length") {
		t.Errorf("MaxBytes above the ring: %v", err)
	}
}
