package ringbuf

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
)

// nowNs is the wall clock stamped into records; tests replace it for golden files.
var nowNs = func() int64 { return time.Now().UnixNano() }

// Writer is the single producer of a DATA or OUTBOUND ring. It is not safe for concurrent
// use: one goroutine owns it. At most one Claim is outstanding at a time.
type Writer struct {
	r       *Ring
	path    string
	tail    int64 // cached: only this writer stores tail
	nextID  int64
	claimed bool
	closed  bool
	claim   Claim // reused: at most one claim is outstanding
}

// NewWriter attaches to r as its producer. The ring must be a DATA or OUTBOUND ring that
// no other live process produces into; a fresh ring starts at batch id 1.
func NewWriter(r *Ring) (*Writer, error) {
	if r.kind == KindCommit {
		return nil, fmt.Errorf("ringbuf: %q is a COMMIT ring; use NewCommitWriter", r.path)
	}
	w := &Writer{r: r, path: r.path, tail: r.Tail(), nextID: 1}
	// Resuming a ring (tests; production recreates): continue after the last batch id.
	if w.tail > 0 {
		w.nextID = lastBatchID(r) + 1
	}
	r.Attach(Producer)
	return w, nil
}

func lastBatchID(r *Ring) int64 {
	var last int64
	for p := r.Head(); p < r.Tail(); {
		off := r.area(p)
		l := int64(atomic.LoadInt32(r.i32(off + RecLengthOffset)))
		if l < 0 {
			l = -l
		}
		if l < RecordHeaderLength {
			break
		}
		if id := int64(binary.LittleEndian.Uint64(r.mem[off+RecBatchIDOffset:])); id > last {
			last = id
		}
		p += Align(l, RecordAlignment)
	}
	return last
}

// Ring returns the ring this writer produces into.
func (w *Writer) Ring() *Ring { return w.r }

// NextBatchID returns the batch id the next committed record will carry.
func (w *Writer) NextBatchID() int64 { return w.nextID }

// Claim is space reserved in the ring for one record. Its slices point straight into the
// shared mapping: fill them in place, then Commit (or Abort). They stop being valid at
// Commit/Abort. The Writer reuses one Claim value: a *Claim is valid until the next claim.
type Claim struct {
	w        *Writer
	pos      int64
	off      int64 // file offset of the record
	length   int64 // unaligned record length
	typ      RecordType
	metaLen  int64
	bodyOff  int64
	bodyLen  int64
	finished bool
}

// Position returns the stream position of the claimed record.
func (c *Claim) Position() int64 { return c.pos }

// Meta returns the space for the Arrow IPC message prefix (ARROW claims; empty for RAW).
func (c *Claim) Meta() []byte {
	s := c.off + RecordHeaderLength
	return c.w.r.mem[s : s+c.metaLen : s+c.metaLen]
}

// Body returns the space for the body (Arrow buffers, or the RAW payload).
func (c *Claim) Body() []byte {
	s := c.off + c.bodyOff
	return c.w.r.mem[s : s+c.bodyLen : s+c.bodyLen]
}

// RecordLength returns the bytes the record occupies in the ring, alignment included.
func RecordLength(typ RecordType, metaLen, bodyLen int64) int64 {
	if typ == TypeRaw {
		return Align(RecordHeaderLength+bodyLen, RecordAlignment)
	}
	return Align(RecordHeaderLength+metaLen, RecordAlignment) + Align(bodyLen, RecordAlignment)
}

// TryClaim reserves a record for metaLen bytes of Arrow message prefix (a multiple of 8;
// 0 for RAW) and bodyLen bytes of body. It returns ErrFull if the consumer has not
// released enough space, and ErrTooLarge if the record can never fit.
func (w *Writer) TryClaim(typ RecordType, metaLen, bodyLen int) (*Claim, error) {
	if w.closed {
		return nil, fmt.Errorf("ringbuf: claim on %q: %w", w.path, ErrClosed)
	}
	if w.claimed {
		return nil, fmt.Errorf("ringbuf: claim on %q: the previous claim was neither committed nor aborted", w.path)
	}
	if typ != TypeArrow && typ != TypeRaw {
		return nil, fmt.Errorf("ringbuf: claim on %q: record type %d cannot be claimed", w.path, typ)
	}
	if metaLen < 0 || bodyLen < 0 || metaLen%8 != 0 || (typ == TypeRaw && metaLen != 0) || (typ == TypeArrow && metaLen < 8) {
		return nil, fmt.Errorf("ringbuf: claim on %q: bad lengths meta=%d body=%d for type %d", w.path, metaLen, bodyLen, typ)
	}
	r := w.r
	bodyOff := int64(RecordHeaderLength)
	if typ == TypeArrow {
		bodyOff = Align(RecordHeaderLength+int64(metaLen), RecordAlignment)
	}
	length := bodyOff + int64(bodyLen)
	aligned := Align(length, RecordAlignment)
	if aligned > r.maxRecord || length > 1<<31-1 {
		return nil, fmt.Errorf("%w: %d bytes (header and alignment included) > max_record_length %d of %q", ErrTooLarge, aligned, r.maxRecord, w.path)
	}
	for {
		head := r.Head()
		free := r.capacity - (w.tail - head)
		idx := w.tail & r.mask
		toEnd := r.capacity - idx
		if aligned > toEnd {
			if free < toEnd {
				return nil, ErrFull
			}
			w.writePadding(toEnd)
			continue
		}
		if free < aligned {
			return nil, ErrFull
		}
		c := &w.claim
		*c = Claim{w: w, pos: w.tail, off: r.area(w.tail), length: length, typ: typ,
			metaLen: int64(metaLen), bodyOff: bodyOff, bodyLen: int64(bodyLen)}
		atomic.StoreInt32(r.i32(c.off+RecStateOffset), 0) // clear last lap's state first
		atomic.StoreInt32(r.i32(c.off+RecLengthOffset), int32(-length))
		w.tail += aligned
		atomic.StoreInt64(r.i64(TailOffset), w.tail)
		w.claimed = true
		return c, nil
	}
}

// Claim is TryClaim that waits with idle (DefaultIdle if nil) while the ring is full,
// until ctx is done.
func (w *Writer) Claim(ctx context.Context, typ RecordType, metaLen, bodyLen int, idle IdleStrategy) (*Claim, error) {
	if idle == nil {
		idle = DefaultIdle()
	}
	for {
		c, err := w.TryClaim(typ, metaLen, bodyLen)
		if err != ErrFull {
			return c, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ringbuf: waiting for space in %q (%d of %d bytes held): %w: %w", w.path, w.r.Used(), w.r.capacity, ErrFull, ctx.Err())
		}
		idle.Idle(0)
	}
}

// writePadding publishes a PADDING record of n bytes at the tail.
func (w *Writer) writePadding(n int64) {
	r := w.r
	off := r.area(w.tail)
	hdr := r.mem[off : off+RecordHeaderLength]
	clear(hdr[4:])
	le := binary.LittleEndian
	le.PutUint32(hdr[RecTypeOffset:], uint32(TypePadding))
	le.PutUint32(hdr[RecStateOffset:], uint32(StateReleased))
	le.PutUint64(hdr[RecPositionOffset:], uint64(w.tail))
	le.PutUint64(hdr[RecProducedOffset:], uint64(nowNs()))
	atomic.StoreInt32(r.i32(off+RecLengthOffset), int32(n))
	w.tail += n
	atomic.StoreInt64(r.i64(TailOffset), w.tail)
}

// Commit publishes the claimed record with rowCount rows and returns its batch id.
func (c *Claim) Commit(rowCount int32) (int64, error) {
	if c.finished {
		return 0, fmt.Errorf("ringbuf: claim at %d of %q already finished", c.pos, c.w.path)
	}
	w := c.w
	r := w.r
	hdr := r.mem[c.off : c.off+RecordHeaderLength]
	le := binary.LittleEndian
	id := w.nextID
	le.PutUint32(hdr[RecTypeOffset:], uint32(c.typ))
	le.PutUint64(hdr[RecBatchIDOffset:], uint64(id))
	le.PutUint32(hdr[RecRowCountOffset:], uint32(rowCount))
	le.PutUint32(hdr[RecMetaOffsetOffset:], RecordHeaderLength)
	le.PutUint32(hdr[RecMetaLengthOffset:], uint32(c.metaLen))
	le.PutUint32(hdr[RecBodyOffsetOffset:], uint32(c.bodyOff))
	le.PutUint32(hdr[RecReservedOffset:], 0)
	le.PutUint64(hdr[RecBodyLengthOffset:], uint64(c.bodyLen))
	le.PutUint64(hdr[RecProducedOffset:], uint64(nowNs()))
	le.PutUint64(hdr[RecPositionOffset:], uint64(c.pos))
	if c.typ == TypeArrow {
		// zero the alignment gap between the message prefix and the body
		clear(r.mem[c.off+RecordHeaderLength+c.metaLen : c.off+c.bodyOff])
	}
	atomic.StoreInt32(r.i32(c.off+RecLengthOffset), int32(c.length))
	c.finished = true
	w.claimed = false
	w.nextID++
	return id, nil
}

// Abort gives the claim up: the space is published as PADDING and no batch id is used.
func (c *Claim) Abort() {
	if c.finished {
		return
	}
	w := c.w
	r := w.r
	hdr := r.mem[c.off : c.off+RecordHeaderLength]
	clear(hdr[4:])
	le := binary.LittleEndian
	le.PutUint32(hdr[RecTypeOffset:], uint32(TypePadding))
	le.PutUint32(hdr[RecStateOffset:], uint32(StateReleased))
	le.PutUint64(hdr[RecPositionOffset:], uint64(c.pos))
	atomic.StoreInt32(r.i32(c.off+RecLengthOffset), int32(Align(c.length, RecordAlignment)))
	c.finished = true
	w.claimed = false
}

// Heartbeat stamps the producer heartbeat.
func (w *Writer) Heartbeat() { w.r.Heartbeat(Producer) }

// Close marks the end of the stream (producer_closed = 1). It does not unmap the ring.
func (w *Writer) Close() error {
	if !w.closed {
		w.closed = true
		w.r.Detach(Producer)
	}
	return nil
}
