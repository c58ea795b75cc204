package arrowbatch

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"unsafe"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// Message is one row of the message schema. Add keeps references to Data, the strings
// and Attributes until the batch is written (Encode or Reset): the bytes are copied once,
// straight into the ring, and never staged.
type Message struct {
	ID              string
	PublishTimeUs   int64 // microseconds since the Unix epoch, UTC
	Data            []byte
	Attributes      map[string]string
	OrderingKey     string // "" is written as null
	DeliveryAttempt int32  // 0 is written as null
}

// Counts of the Arrow layout.
const (
	numNodes   = 9  // message_id, publish_time, data, attributes, entries, key, value, ordering_key, delivery_attempt
	numBuffers = 22 // validity (+ offsets) (+ data) per node, depth first
)

// Batch accumulates rows for one record batch. It is not safe for concurrent use. The
// zero value is ready to use.
type Batch struct {
	rows []Message
	// running byte counts of the variable-length columns
	idBytes, dataBytes, keyBytes, valBytes, okBytes int64
	entries                                         int64
	// SortAttributes writes each row's attributes in key order (deterministic bytes,
	// for golden files; costs a sort per row). Off by default.
	SortAttributes bool

	fb      *flatbuffers.Builder
	bufs    [numBuffers][2]int64 // offset, length within the body
	nodes   [numNodes][2]int64   // length, null count
	keysTmp []string
}

// Add appends a row. The message's slices must stay unchanged until the batch is
// written or reset.
func (b *Batch) Add(m Message) {
	b.rows = append(b.rows, m)
	b.idBytes += int64(len(m.ID))
	b.dataBytes += int64(len(m.Data))
	b.okBytes += int64(len(m.OrderingKey))
	for k, v := range m.Attributes {
		b.keyBytes += int64(len(k))
		b.valBytes += int64(len(v))
	}
	b.entries += int64(len(m.Attributes))
}

// Len returns the number of rows.
func (b *Batch) Len() int { return len(b.rows) }

// PayloadBytes returns the bytes of variable-length data held (ids, payloads, attribute
// keys and values, ordering keys): the figure batch size limits apply to.
func (b *Batch) PayloadBytes() int64 {
	return b.idBytes + b.dataBytes + b.keyBytes + b.valBytes + b.okBytes
}

// Reset drops all rows (and the references they hold), keeping capacity.
func (b *Batch) Reset() {
	clear(b.rows)
	b.rows = b.rows[:0]
	b.idBytes, b.dataBytes, b.keyBytes, b.valBytes, b.okBytes, b.entries = 0, 0, 0, 0, 0, 0
}

func align64(n int64) int64 { return (n + 63) &^ 63 }

// layout computes the body offset and length of every buffer and the node counts.
func (b *Batch) layout() (bodyLen int64) {
	n := int64(len(b.rows))
	m := b.entries
	var off int64
	i := 0
	put := func(length int64) {
		b.bufs[i] = [2]int64{off, length}
		off += align64(length)
		i++
	}
	bitmap := func(rows int64) int64 { return (rows + 7) / 8 }
	varlen := func(rows, data int64) { put(bitmap(rows)); put(4 * (rows + 1)); put(data) }
	okNulls, daNulls := int64(0), int64(0)
	for i := range b.rows {
		if b.rows[i].OrderingKey == "" {
			okNulls++
		}
		if b.rows[i].DeliveryAttempt == 0 {
			daNulls++
		}
	}
	varlen(n, b.idBytes) // message_id
	put(bitmap(n))
	put(8 * n)             // publish_time
	varlen(n, b.dataBytes) // data
	put(bitmap(n))
	put(4 * (n + 1))      // attributes (map): validity, offsets
	put(bitmap(m))        // entries struct: validity
	varlen(m, b.keyBytes) // key
	varlen(m, b.valBytes) // value
	varlen(n, b.okBytes)  // ordering_key
	put(bitmap(n))
	put(4 * n) // delivery_attempt
	b.nodes = [numNodes][2]int64{{n, 0}, {n, 0}, {n, 0}, {n, 0}, {m, 0}, {m, 0}, {m, 0}, {n, okNulls}, {n, daNulls}}
	return off
}

// Arrow flatbuffer constants (format/Message.fbs).
const (
	metadataV5          = 4
	headerRecordBatch   = 3
	messageFieldCount   = 5 // version, header_type, header, bodyLength, custom_metadata
	recordBatchFieldCnt = 5 // length, nodes, buffers, compression, variadicBufferCounts
)

// metadata builds the flatbuffer Message for the current layout.
func (b *Batch) metadata(bodyLen int64) []byte {
	if b.fb == nil {
		b.fb = flatbuffers.NewBuilder(1024)
	}
	fb := b.fb
	fb.Reset()
	// buffers vector (structs of two longs), prepended in reverse
	fb.StartVector(16, numBuffers, 8)
	for i := numBuffers - 1; i >= 0; i-- {
		fb.Prep(8, 16)
		fb.PrependInt64(b.bufs[i][1])
		fb.PrependInt64(b.bufs[i][0])
	}
	buffers := fb.EndVector(numBuffers)
	fb.StartVector(16, numNodes, 8)
	for i := numNodes - 1; i >= 0; i-- {
		fb.Prep(8, 16)
		fb.PrependInt64(b.nodes[i][1])
		fb.PrependInt64(b.nodes[i][0])
	}
	nodes := fb.EndVector(numNodes)
	fb.StartObject(recordBatchFieldCnt)
	fb.PrependInt64Slot(0, int64(len(b.rows)), 0)
	fb.PrependUOffsetTSlot(1, nodes, 0)
	fb.PrependUOffsetTSlot(2, buffers, 0)
	rb := fb.EndObject()
	fb.StartObject(messageFieldCount)
	fb.PrependInt64Slot(3, bodyLen, 0)
	fb.PrependUOffsetTSlot(2, rb, 0)
	fb.PrependInt16Slot(0, metadataV5, 0)
	fb.PrependByteSlot(1, headerRecordBatch, 0)
	msg := fb.EndObject()
	fb.Finish(msg)
	return fb.FinishedBytes()
}

// Sizes returns the Arrow message prefix length (continuation, size, flatbuffer, padding
// to 8) and the body length the batch needs. The metadata is built by this call and
// reused by WriteTo.
func (b *Batch) Sizes() (metaLen, bodyLen int64) {
	bodyLen = b.layout()
	meta := b.metadata(bodyLen)
	return 8 + (int64(len(meta))+7)&^7, bodyLen
}

// ErrTooManyBytes: a column of the batch needs more than 2 GiB of data (int32 offsets).
var ErrTooManyBytes = fmt.Errorf("arrowbatch: batch column exceeds 2 GiB")

// WriteTo writes the batch into a ring claim of TypeArrow made with the lengths Sizes
// returned, then commits it, and returns the batch id. The batch is reset afterwards.
func (b *Batch) WriteTo(c *ringbuf.Claim) (int64, error) {
	meta := b.fb.FinishedBytes()
	dst := c.Meta()
	binary.LittleEndian.PutUint32(dst, 0xFFFFFFFF)
	binary.LittleEndian.PutUint32(dst[4:], uint32(len(dst)-8))
	copy(dst[8:], meta)
	clear(dst[8+len(meta):])
	b.writeBody(c.Body())
	id, err := c.Commit(int32(len(b.rows)))
	b.Reset()
	return id, err
}

// Encode writes the batch into w as one ARROW record, waiting for space with idle while
// the ring is full (until ctx ends), and returns the batch id and row count. An empty
// batch writes nothing and returns id 0.
func (b *Batch) Encode(ctx context.Context, w *ringbuf.Writer, idle ringbuf.IdleStrategy) (batchID int64, rows int, err error) {
	rows = len(b.rows)
	if rows == 0 {
		return 0, 0, nil
	}
	if b.idBytes > math.MaxInt32 || b.dataBytes > math.MaxInt32 || b.keyBytes > math.MaxInt32 || b.valBytes > math.MaxInt32 || b.okBytes > math.MaxInt32 {
		return 0, 0, ErrTooManyBytes
	}
	metaLen, bodyLen := b.Sizes()
	c, err := w.Claim(ctx, ringbuf.TypeArrow, int(metaLen), int(bodyLen), idle)
	if err != nil {
		return 0, 0, fmt.Errorf("arrowbatch: claim %d rows (%d body bytes): %w", rows, bodyLen, err)
	}
	id, err := b.WriteTo(c)
	return id, rows, err
}

func i32s(b []byte) []int32 {
	return unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
}

func i64s(b []byte) []int64 {
	return unsafe.Slice((*int64)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/8)
}

// writeBody fills body (64-byte aligned, inside the ring) per the layout.
func (b *Batch) writeBody(body []byte) {
	buf := func(i int) []byte {
		o, l := b.bufs[i][0], b.bufs[i][1]
		// zero the alignment gap after the buffer: the ring holds stale bytes
		end := align64(o + l)
		if end > int64(len(body)) {
			end = int64(len(body))
		}
		clear(body[o+l : end])
		return body[o : o+l]
	}
	allValid := func(dst []byte, rows int64) {
		for i := range dst {
			dst[i] = 0xFF
		}
		if r := rows % 8; r != 0 {
			dst[len(dst)-1] = byte(1<<r - 1)
		}
	}
	n := int64(len(b.rows))
	rows := b.rows
	// 0 message_id
	allValid(buf(0), n)
	off, data := i32s(buf(1)), buf(2)
	var pos int32
	for i := range rows {
		off[i] = pos
		pos += int32(copy(data[pos:], rows[i].ID))
	}
	off[n] = pos
	// 1 publish_time
	allValid(buf(3), n)
	ts := i64s(buf(4))
	for i := range rows {
		ts[i] = rows[i].PublishTimeUs
	}
	// 2 data
	allValid(buf(5), n)
	off, data = i32s(buf(6)), buf(7)
	pos = 0
	for i := range rows {
		off[i] = pos
		pos += int32(copy(data[pos:], rows[i].Data))
	}
	off[n] = pos
	// 3 attributes: map validity, map offsets; 4 entries; 5 key; 6 value
	m := b.entries
	allValid(buf(8), n)
	moff := i32s(buf(9))
	allValid(buf(10), m)
	allValid(buf(11), m)
	koff, kdata := i32s(buf(12)), buf(13)
	allValid(buf(14), m)
	voff, vdata := i32s(buf(15)), buf(16)
	var e, kpos, vpos int32
	for i := range rows {
		moff[i] = e
		attrs := rows[i].Attributes
		if b.SortAttributes && len(attrs) > 1 {
			b.keysTmp = b.keysTmp[:0]
			for k := range attrs {
				b.keysTmp = append(b.keysTmp, k)
			}
			sort.Strings(b.keysTmp)
			for _, k := range b.keysTmp {
				koff[e], voff[e] = kpos, vpos
				kpos += int32(copy(kdata[kpos:], k))
				vpos += int32(copy(vdata[vpos:], attrs[k]))
				e++
			}
			continue
		}
		for k, v := range attrs {
			koff[e], voff[e] = kpos, vpos
			kpos += int32(copy(kdata[kpos:], k))
			vpos += int32(copy(vdata[vpos:], v))
			e++
		}
	}
	moff[n] = e
	koff[m], voff[m] = kpos, vpos
	// 7 ordering_key (nullable)
	okValid := buf(17)
	clear(okValid)
	off, data = i32s(buf(18)), buf(19)
	pos = 0
	for i := range rows {
		off[i] = pos
		if k := rows[i].OrderingKey; k != "" {
			okValid[i>>3] |= 1 << (i & 7)
			pos += int32(copy(data[pos:], k))
		}
	}
	off[n] = pos
	// 8 delivery_attempt (nullable)
	daValid := buf(20)
	clear(daValid)
	da := i32s(buf(21))
	for i := range rows {
		da[i] = rows[i].DeliveryAttempt
		if rows[i].DeliveryAttempt != 0 {
			daValid[i>>3] |= 1 << (i & 7)
		}
	}
}
