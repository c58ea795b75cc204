package arrowbatch

import (
	"context"
	"fmt"
	"time"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// Policy says when a batch closes: on MaxRows rows, MaxBytes payload bytes, or Linger
// after its first row, whichever comes first.
type Policy struct {
	MaxRows  int
	MaxBytes int64
	Linger   time.Duration
}

// DefaultPolicy: batches of up to 32768 rows or 8 MiB, lingering at most 5 ms. Large
// batches amortise the JVM's per-batch objects (about 4 KiB: Arrow Java makes two ArrowBuf
// objects per buffer) to under a byte per message at 1 KiB. At 1 GB/s an 8 MiB batch fills
// in 8 ms; at lower rates the linger time bounds the latency.
var DefaultPolicy = Policy{MaxRows: 32768, MaxBytes: 8 << 20, Linger: 5 * time.Millisecond}

// Validate reports a policy that cannot work.
func (p Policy) Validate(maxRecord int64) error {
	if p.MaxRows <= 0 || p.MaxBytes <= 0 || p.Linger <= 0 {
		return fmt.Errorf("arrowbatch: batch policy needs positive MaxRows, MaxBytes and Linger, got %+v", p)
	}
	if p.MaxBytes > maxRecord/2 {
		return fmt.Errorf("arrowbatch: batch MaxBytes=%d must be at most half the ring's max record length %d (leave room for offsets and metadata)", p.MaxBytes, maxRecord)
	}
	return nil
}

// Batcher closes batches by Policy and writes them into a ring. Not safe for concurrent
// use.
type Batcher struct {
	b     Batch
	w     *ringbuf.Writer
	p     Policy
	idle  ringbuf.IdleStrategy
	first time.Time
}

// Flushed describes one batch written to the ring: the rows Add accepted since the
// previous flush, in order.
type Flushed struct {
	BatchID int64
	Rows    int
	Bytes   int64
}

// NewBatcher returns a batcher writing into w.
func NewBatcher(w *ringbuf.Writer, p Policy, idle ringbuf.IdleStrategy) (*Batcher, error) {
	if err := p.Validate(w.Ring().MaxRecordLength()); err != nil {
		return nil, err
	}
	return &Batcher{w: w, p: p, idle: idle}, nil
}

// Add appends m, first flushing the open batch if m would push it past MaxRows or
// MaxBytes. A message larger than MaxBytes goes alone in a batch. The returned Flushed
// has Rows > 0 when a batch was written (it does not include m).
func (bt *Batcher) Add(ctx context.Context, m Message) (Flushed, error) {
	var f Flushed
	size := int64(len(m.ID) + len(m.Data) + len(m.OrderingKey))
	for k, v := range m.Attributes {
		size += int64(len(k) + len(v))
	}
	if bt.b.Len() > 0 && (bt.b.Len() >= bt.p.MaxRows || bt.b.PayloadBytes()+size > bt.p.MaxBytes) {
		var err error
		if f, err = bt.Flush(ctx); err != nil {
			return f, err
		}
	}
	if bt.b.Len() == 0 {
		bt.first = time.Now()
	}
	bt.b.Add(m)
	return f, nil
}

// Due reports whether the open batch has lingered long enough to be flushed.
func (bt *Batcher) Due(now time.Time) bool {
	return bt.b.Len() > 0 && now.Sub(bt.first) >= bt.p.Linger
}

// Deadline returns when the open batch becomes due (zero time if empty).
func (bt *Batcher) Deadline() time.Time {
	if bt.b.Len() == 0 {
		return time.Time{}
	}
	return bt.first.Add(bt.p.Linger)
}

// Pending returns the rows in the open batch.
func (bt *Batcher) Pending() int { return bt.b.Len() }

// Flush writes the open batch (if any), waiting for ring space until ctx ends.
func (bt *Batcher) Flush(ctx context.Context) (Flushed, error) {
	bytes := bt.b.PayloadBytes()
	id, rows, err := bt.b.Encode(ctx, bt.w, bt.idle)
	if err != nil {
		return Flushed{}, err
	}
	return Flushed{BatchID: id, Rows: rows, Bytes: bytes}, nil
}
