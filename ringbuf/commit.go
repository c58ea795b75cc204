package ringbuf

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// CommitRecord is one record of a COMMIT ring.
type CommitRecord struct {
	Position       int64
	Type           CommitType
	FirstBatchID   int64
	LastBatchID    int64
	Partition      int32
	ProducerPid    int32
	DataInstanceID uint64
	ProducedNs     int64
}

// cmtAbandoned is the length the consumer stores in a slot it abandons.
const cmtAbandoned = -1

// CommitWriter produces into a COMMIT ring (the JVM's role; Go has one for tests and
// tools). It is safe for concurrent use and with producers in other processes.
type CommitWriter struct {
	r *Ring
}

// NewCommitWriter attaches to a COMMIT ring as a producer.
func NewCommitWriter(r *Ring) (*CommitWriter, error) {
	if r.kind != KindCommit {
		return nil, fmt.Errorf("ringbuf: %q is a %v ring, not a COMMIT ring", r.path, r.kind)
	}
	r.Attach(Producer)
	return &CommitWriter{r: r}, nil
}

// TryWrite publishes one commit record, or returns ErrFull.
func (w *CommitWriter) TryWrite(c CommitRecord) error {
	if c.FirstBatchID < 1 || c.LastBatchID < c.FirstBatchID {
		return fmt.Errorf("ringbuf: commit record batch range [%d, %d] in %q: need 1 <= first <= last", c.FirstBatchID, c.LastBatchID, w.r.path)
	}
	r := w.r
	for {
		t := r.Tail()
		if t-r.Head() >= r.capacity {
			return ErrFull
		}
		if !atomic.CompareAndSwapInt64(r.i64(TailOffset), t, t+CommitRecordLength) {
			continue
		}
		off := r.area(t)
		if !atomic.CompareAndSwapInt32(r.i32(off+CmtLengthOffset), 0, -CommitRecordLength) {
			continue // abandoned by the consumer: claim again
		}
		if r.Head() > t {
			// We stalled past the unblock timeout and the consumer recycled position t.
			atomic.CompareAndSwapInt32(r.i32(off+CmtLengthOffset), -CommitRecordLength, 0)
			continue
		}
		s := r.mem[off : off+CommitRecordLength]
		le := binary.LittleEndian
		le.PutUint32(s[CmtTypeOffset:], uint32(c.Type))
		le.PutUint64(s[CmtPositionOffset:], uint64(t))
		le.PutUint64(s[CmtFirstOffset:], uint64(c.FirstBatchID))
		le.PutUint64(s[CmtLastOffset:], uint64(c.LastBatchID))
		le.PutUint32(s[CmtPartitionOffset:], uint32(c.Partition))
		pid := c.ProducerPid
		if pid == 0 {
			pid = int32(os.Getpid())
		}
		le.PutUint32(s[CmtPidOffset:], uint32(pid))
		le.PutUint64(s[CmtInstanceIDOffset:], c.DataInstanceID)
		ns := c.ProducedNs
		if ns == 0 {
			ns = time.Now().UnixNano()
		}
		le.PutUint64(s[CmtProducedOffset:], uint64(ns))
		le.PutUint64(s[CmtReservedOffset:], 0)
		if atomic.CompareAndSwapInt32(r.i32(off+CmtLengthOffset), -CommitRecordLength, CommitRecordLength) {
			return nil
		}
		// The consumer abandoned the slot while we wrote it: write the record again.
	}
}

// Write is TryWrite that waits while the ring is full, until ctx is done.
func (w *CommitWriter) Write(ctx context.Context, c CommitRecord, idle IdleStrategy) error {
	if idle == nil {
		idle = DefaultIdle()
	}
	for {
		err := w.TryWrite(c)
		if err != ErrFull {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ringbuf: waiting for space in %q: %w: %w", w.r.path, ErrFull, ctx.Err())
		}
		idle.Idle(0)
	}
}

// CommitReader is the single consumer of a COMMIT ring (ackd). Not safe for concurrent use.
type CommitReader struct {
	r *Ring
	// UnblockTimeout: a claimed slot that stays unpublished this long is abandoned
	// (written as PADDING) so one dead producer cannot stall the ring. Default 10 s.
	UnblockTimeout time.Duration
	stuckAt        int64
	stuckSince     time.Time
	unblocked      int64
}

// NewCommitReader attaches to a COMMIT ring as its consumer.
func NewCommitReader(r *Ring) (*CommitReader, error) {
	if r.kind != KindCommit {
		return nil, fmt.Errorf("ringbuf: %q is a %v ring, not a COMMIT ring", r.path, r.kind)
	}
	r.Attach(Consumer)
	return &CommitReader{r: r, UnblockTimeout: 10 * time.Second, stuckAt: -1}, nil
}

// Unblocked returns how many abandoned slots were skipped.
func (c *CommitReader) Unblocked() int64 { return c.unblocked }

// Poll returns the next published commit record and consumes it, or ok=false if there is
// none. PADDING records are consumed silently. A record that breaks a rule of
// docs/FORMAT.md is consumed and returned as an error wrapping ErrCorruptRecord, so one
// bad record cannot stall the ring.
func (c *CommitReader) Poll() (rec CommitRecord, ok bool, err error) {
	r := c.r
	for {
		h := r.Head()
		if h >= r.Tail() {
			return CommitRecord{}, false, nil
		}
		off := r.area(h)
		l := atomic.LoadInt32(r.i32(off + CmtLengthOffset))
		if l != CommitRecordLength {
			if l != 0 && l != -CommitRecordLength && l != cmtAbandoned {
				err := recordErr(r.path, h, "length", l, "must be 0, -64 or 64")
				c.consume(h, off)
				return CommitRecord{}, false, err
			}
			if c.stuckAt != h {
				c.stuckAt, c.stuckSince = h, time.Now()
				return CommitRecord{}, false, nil
			}
			if time.Since(c.stuckSince) < c.UnblockTimeout {
				return CommitRecord{}, false, nil
			}
			if !atomic.CompareAndSwapInt32(r.i32(off+CmtLengthOffset), l, cmtAbandoned) {
				continue // published meanwhile
			}
			c.unblocked++
			c.consume(h, off)
			continue
		}
		c.stuckAt = -1
		rec, err := ParseCommitRecord(r.path, r.mem[off:off+CommitRecordLength], h)
		c.consume(h, off)
		if err != nil {
			return CommitRecord{}, false, err
		}
		if rec.Type == CommitTypePadding {
			continue
		}
		return rec, true, nil
	}
}

func (c *CommitReader) consume(h, off int64) {
	r := c.r
	clear(r.mem[off+CmtTypeOffset : off+CommitRecordLength])
	atomic.StoreInt32(r.i32(off+CmtLengthOffset), 0)
	atomic.StoreInt64(r.i64(HeadOffset), h+CommitRecordLength)
}

// ParseCommitRecord validates a published 64-byte commit record read at position pos.
func ParseCommitRecord(path string, s []byte, pos int64) (CommitRecord, error) {
	if len(s) < CommitRecordLength {
		return CommitRecord{}, recordErr(path, pos, "length", len(s), "a commit record is 64 bytes")
	}
	le := binary.LittleEndian
	rec := CommitRecord{
		Position:       int64(le.Uint64(s[CmtPositionOffset:])),
		Type:           CommitType(int32(le.Uint32(s[CmtTypeOffset:]))),
		FirstBatchID:   int64(le.Uint64(s[CmtFirstOffset:])),
		LastBatchID:    int64(le.Uint64(s[CmtLastOffset:])),
		Partition:      int32(le.Uint32(s[CmtPartitionOffset:])),
		ProducerPid:    int32(le.Uint32(s[CmtPidOffset:])),
		DataInstanceID: le.Uint64(s[CmtInstanceIDOffset:]),
		ProducedNs:     int64(le.Uint64(s[CmtProducedOffset:])),
	}
	if l := int32(le.Uint32(s[CmtLengthOffset:])); l != CommitRecordLength {
		return rec, recordErr(path, pos, "length", l, "a published commit record has length 64")
	}
	switch rec.Type {
	case CommitTypeCommit, CommitTypeRelease, CommitTypeNack:
	case CommitTypePadding:
		return rec, nil
	default:
		return rec, recordErr(path, pos, "type", int32(rec.Type), "must be 1 (COMMIT), 2 (RELEASE), 3 (NACK) or 4 (PADDING)")
	}
	if rec.Position != pos {
		return rec, recordErr(path, pos, "position", rec.Position, "does not match the position it was read at (stale slot)")
	}
	if rec.FirstBatchID < 1 || rec.LastBatchID < rec.FirstBatchID {
		return rec, recordErr(path, pos, "first_batch_id/last_batch_id", fmt.Sprintf("%d/%d", rec.FirstBatchID, rec.LastBatchID), "need 1 <= first <= last")
	}
	if rec.Partition < 0 {
		return rec, recordErr(path, pos, "partition", rec.Partition, "must be >= 0")
	}
	if rec.DataInstanceID == 0 {
		return rec, recordErr(path, pos, "data_ring_instance_id", 0, "must be non-zero")
	}
	return rec, nil
}

// Heartbeat stamps the consumer heartbeat.
func (c *CommitReader) Heartbeat() { c.r.Heartbeat(Consumer) }

// Close marks the consumer closed. It does not unmap the ring.
func (c *CommitReader) Close() error {
	c.r.Detach(Consumer)
	return nil
}
