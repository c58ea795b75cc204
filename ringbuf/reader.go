package ringbuf

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
)

// Record is one complete record of a DATA or OUTBOUND ring, as a Reader returns it. Meta
// and Body point into the shared mapping and stay valid until the record is released
// (Reader.Release) and never after the ring is closed.
type Record struct {
	Position   int64
	Type       RecordType
	BatchID    int64
	RowCount   int32
	Meta       []byte // the Arrow IPC message prefix (empty for RAW)
	Body       []byte
	ProducedNs int64 // wall clock at commit
	Aligned    int64 // bytes the record occupies in the ring
}

// Reader consumes a DATA or OUTBOUND ring. Poll is for one goroutine; Release may be
// called from any goroutine, in any order.
type Reader struct {
	r    *Ring
	path string
	pos  int64
	// DeadProducerTimeout: a half-written record whose producer has been dead (or silent)
	// this long is skipped. Default 10 s.
	DeadProducerTimeout time.Duration
	stuckSince          time.Time
	stuckAt             int64
	skipped             int64
	polled              atomic.Int64 // rd.pos as published to Release callers
}

// NewReader attaches to r as its consumer, starting at head_position.
func NewReader(r *Ring) (*Reader, error) {
	if r.kind == KindCommit {
		return nil, fmt.Errorf("ringbuf: %q is a COMMIT ring; use NewCommitReader", r.path)
	}
	r.Attach(Consumer)
	rd := &Reader{r: r, path: r.path, pos: r.Head(), DeadProducerTimeout: 10 * time.Second, stuckAt: -1}
	rd.polled.Store(rd.pos)
	return rd, nil
}

// Ring returns the ring this reader consumes.
func (rd *Reader) Ring() *Ring { return rd.r }

// Position returns the read cursor (the position of the next record to poll).
func (rd *Reader) Position() int64 { return rd.pos }

// Skipped returns how many half-written records of a dead producer were skipped.
func (rd *Reader) Skipped() int64 { return rd.skipped }

// Poll returns the next complete record, or ok=false if there is none yet. PADDING
// records are consumed silently. A record that breaks a rule of docs/FORMAT.md returns an
// error wrapping ErrCorruptRecord; the reader does not advance past it.
func (rd *Reader) Poll() (rec Record, ok bool, err error) {
	r := rd.r
	for {
		tail := r.Tail()
		if rd.pos >= tail {
			return Record{}, false, nil
		}
		off := r.area(rd.pos)
		l := int64(atomic.LoadInt32(r.i32(off + RecLengthOffset)))
		if l <= 0 {
			if err := rd.checkStuck(off, -l); err != nil {
				return Record{}, false, err
			}
			if rd.stuckAt == -2 { // skipped
				rd.stuckAt = -1
				continue
			}
			return Record{}, false, nil
		}
		rd.stuckAt = -1
		rec, err := parseRecord(rd.path, r.mem[r.headerLen:], rd.pos&r.mask, rd.pos, l, r.maxRecord)
		if err != nil {
			return Record{}, false, err
		}
		rd.pos += rec.Aligned
		rd.polled.Store(rd.pos)
		if rec.Type == TypePadding {
			rd.advanceHead()
			continue
		}
		return rec, true, nil
	}
}

// checkStuck handles a record whose length is not positive at the cursor.
func (rd *Reader) checkStuck(off, absLen int64) error {
	if rd.stuckAt != rd.pos {
		rd.stuckAt, rd.stuckSince = rd.pos, time.Now()
		return nil
	}
	if time.Since(rd.stuckSince) < rd.DeadProducerTimeout/10 {
		return nil
	}
	if alive, _ := rd.r.PeerAlive(Producer, rd.DeadProducerTimeout); alive {
		return nil
	}
	if absLen < RecordHeaderLength || absLen > rd.r.maxRecord || (rd.pos&rd.r.mask)+Align(absLen, RecordAlignment) > rd.r.capacity {
		return recordErr(rd.path, rd.pos, "length", -absLen, "a half-written record of a dead producer with an impossible length: cannot skip it")
	}
	atomic.OrInt32(rd.r.i32(off+RecStateOffset), StateReleased|StateAborted)
	rd.pos += Align(absLen, RecordAlignment)
	rd.polled.Store(rd.pos)
	rd.skipped++
	rd.stuckAt = -2
	rd.advanceHead()
	return nil
}

// parseRecord validates the record at index idx of area (positive length l) and returns
// it. It touches nothing outside area.
func parseRecord(path string, area []byte, idx, pos, l, maxRecord int64) (Record, error) {
	capacity := int64(len(area))
	if idx%RecordAlignment != 0 {
		return Record{}, recordErr(path, pos, "position", pos, "records start on 64-byte boundaries")
	}
	if l < RecordHeaderLength || l > maxRecord {
		return Record{}, recordErr(path, pos, "length", l, fmt.Sprintf("must be in [%d, max_record_length=%d]", RecordHeaderLength, maxRecord))
	}
	aligned := Align(l, RecordAlignment)
	if idx+aligned > capacity {
		return Record{}, recordErr(path, pos, "length", l, fmt.Sprintf("crosses the end of the ring area (index %d + %d > capacity %d)", idx, aligned, capacity))
	}
	h := area[idx : idx+RecordHeaderLength]
	le := binary.LittleEndian
	typ := RecordType(int32(le.Uint32(h[RecTypeOffset:])))
	if p := int64(le.Uint64(h[RecPositionOffset:])); p != pos {
		return Record{}, recordErr(path, pos, "position", p, "does not match the position it was read at (stale or foreign record)")
	}
	rec := Record{Position: pos, Type: typ, Aligned: aligned,
		BatchID:    int64(le.Uint64(h[RecBatchIDOffset:])),
		RowCount:   int32(le.Uint32(h[RecRowCountOffset:])),
		ProducedNs: int64(le.Uint64(h[RecProducedOffset:]))}
	switch typ {
	case TypePadding:
		if l%RecordAlignment != 0 {
			return Record{}, recordErr(path, pos, "length", l, "a PADDING length must be a multiple of 64")
		}
		return rec, nil
	case TypeRaw, TypeArrow:
	default:
		return Record{}, recordErr(path, pos, "type", int32(typ), "must be 1 (ARROW), 2 (PADDING) or 3 (RAW)")
	}
	if rec.BatchID <= 0 {
		return Record{}, recordErr(path, pos, "batch_id", rec.BatchID, "must be >= 1")
	}
	if rec.RowCount < 0 {
		return Record{}, recordErr(path, pos, "row_count", rec.RowCount, "must be >= 0")
	}
	mo := int64(le.Uint32(h[RecMetaOffsetOffset:]))
	ml := int64(le.Uint32(h[RecMetaLengthOffset:]))
	bo := int64(le.Uint32(h[RecBodyOffsetOffset:]))
	bl := int64(le.Uint64(h[RecBodyLengthOffset:]))
	if mo != RecordHeaderLength {
		return Record{}, recordErr(path, pos, "meta_offset", mo, "must be 64")
	}
	if typ == TypeRaw {
		if ml != 0 {
			return Record{}, recordErr(path, pos, "meta_length", ml, "must be 0 for RAW")
		}
		if bo != RecordHeaderLength {
			return Record{}, recordErr(path, pos, "body_offset", bo, "must be 64 for RAW")
		}
	} else {
		if ml < 8 || ml%8 != 0 {
			return Record{}, recordErr(path, pos, "meta_length", ml, "must be a multiple of 8, at least 8")
		}
		if bo != Align(RecordHeaderLength+ml, RecordAlignment) {
			return Record{}, recordErr(path, pos, "body_offset", bo, fmt.Sprintf("must be align64(64 + meta_length) = %d", Align(RecordHeaderLength+ml, RecordAlignment)))
		}
	}
	if bl < 0 || bo+bl != l {
		return Record{}, recordErr(path, pos, "body_length", bl, fmt.Sprintf("body_offset(%d) + body_length must equal length(%d)", bo, l))
	}
	if typ == TypeArrow {
		m := area[idx+mo : idx+mo+ml]
		if c := le.Uint32(m); c != 0xFFFFFFFF {
			return Record{}, recordErr(path, pos, "arrow continuation", fmt.Sprintf("%#x", c), "must be 0xFFFFFFFF")
		}
		if fl := int64(int32(le.Uint32(m[4:]))); fl != ml-8 {
			return Record{}, recordErr(path, pos, "arrow metadata size", fl, fmt.Sprintf("must equal meta_length - 8 = %d", ml-8))
		}
		rec.Meta = m
	}
	rec.Body = area[idx+bo : idx+bo+bl : idx+bo+bl]
	return rec, nil
}

// Release marks the record at position pos as no longer referenced and advances
// head_position over the contiguous run of released records, so the producer may reuse
// the space. Releases may come in any order and from any goroutine.
func (rd *Reader) Release(pos int64) error {
	r := rd.r
	if pos < r.Head() || pos >= rd.polled.Load() || pos%RecordAlignment != 0 {
		return fmt.Errorf("ringbuf: release of position %d in %q: not a polled, unreleased record (head %d, read cursor %d)", pos, rd.path, r.Head(), rd.polled.Load())
	}
	off := r.area(pos)
	prev := atomic.OrInt32(r.i32(off+RecStateOffset), StateReleased)
	if prev&StateReleased != 0 {
		return fmt.Errorf("ringbuf: record at position %d in %q released twice", pos, rd.path)
	}
	rd.advanceHead()
	return nil
}

// advanceHead moves head over released records (CAS, safe against other releasers).
func (rd *Reader) advanceHead() {
	r := rd.r
	for {
		h := r.Head()
		if h >= rd.polled.Load() {
			return
		}
		off := r.area(h)
		l := int64(atomic.LoadInt32(r.i32(off + RecLengthOffset)))
		st := atomic.LoadInt32(r.i32(off + RecStateOffset))
		if l < 0 {
			if st&StateAborted == 0 {
				return
			}
			l = -l // a skipped half-written record of a dead producer
		}
		if l < RecordHeaderLength || st&StateReleased == 0 {
			return
		}
		atomic.CompareAndSwapInt64(r.i64(HeadOffset), h, h+Align(l, RecordAlignment))
	}
}

// Heartbeat stamps the consumer heartbeat.
func (rd *Reader) Heartbeat() { rd.r.Heartbeat(Consumer) }

// ProducerClosed reports whether the producer ended the stream and everything it wrote
// has been polled.
func (rd *Reader) ProducerClosed() bool {
	return rd.r.Peer(Producer).Closed && rd.pos >= rd.r.Tail()
}

// Close marks the consumer closed. It does not unmap the ring.
func (rd *Reader) Close() error {
	rd.r.Detach(Consumer)
	return nil
}
