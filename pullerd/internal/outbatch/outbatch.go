// Package outbatch parses the OUTBOUND record batches that a JVM writer puts into an
// OUTBOUND ring (docs/FORMAT.md section 6.1) for pullerd to publish: every offset another
// process wrote is checked before it is used, and every accessor returns bytes that point
// into the ring record (no copy). It also holds the OUTBOUND schema and a reference encoder
// (arrow-go's own IPC writer) for tests and tools.
package outbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// The OUTBOUND schema (docs/FORMAT.md section 6): what the JVM writes for pullerd to
// publish, one row per message.
//
//	# column        Arrow type                                  nullable
//	0 data          binary                                      no
//	1 attributes    map<utf8 key not null, utf8 value>          no (empty map: none)
//	2 ordering_key  utf8                                        yes (null: none)
//
// Field nodes, depth first: data, attributes, entries, key, value, ordering_key (6).
// Buffers, in the same order: data validity/offsets/values, attributes validity/offsets,
// entries validity, key validity/offsets/values, value validity/offsets/values,
// ordering_key validity/offsets/values (15).
var Schema = arrow.NewSchema([]arrow.Field{
	{Name: "data", Type: arrow.BinaryTypes.Binary, Nullable: false},
	{Name: "attributes", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String), Nullable: false},
	{Name: "ordering_key", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// Layout counts and buffer indexes of an OUTBOUND batch.
const (
	obNodes   = 6
	obBuffers = 15

	obNodeData    = 0
	obNodeAttrs   = 1
	obNodeEntries = 2
	obNodeKey     = 3
	obNodeValue   = 4
	obNodeOK      = 5

	obBufDataValid  = 0
	obBufDataOff    = 1
	obBufData       = 2
	obBufAttrsValid = 3
	obBufAttrsOff   = 4
	obBufEntValid   = 5
	obBufKeyValid   = 6
	obBufKeyOff     = 7
	obBufKey        = 8
	obBufValValid   = 9
	obBufValOff     = 10
	obBufVal        = 11
	obBufOKValid    = 12
	obBufOKOff      = 13
	obBufOK         = 14
)

var (
	schemaOnce sync.Once
	schemaMsg  []byte
	schemaErr  error
)

// SchemaMessage returns Schema as the Arrow IPC encapsulated Schema message
// stored in every OUTBOUND ring header. Do not modify it.
func SchemaMessage() ([]byte, error) {
	schemaOnce.Do(func() { schemaMsg, schemaErr = arrowbatch.EncodeSchema(Schema) })
	return schemaMsg, schemaErr
}

// ErrBadBatch: an OUTBOUND record breaks a rule of docs/FORMAT.md section 6.1. Every error
// Parse and View.Check return wraps it and names the rule and the value.
var ErrBadBatch = errors.New("outbatch: bad outbound batch")

func badBatch(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadBatch}, args...)...)
}

// View is a validated OUTBOUND record batch: every accessor returns bytes that point into
// the ring record (no copy), valid until the record is released.
type View struct {
	rows    int
	entries int
	bufs    [obBuffers][]byte
	okNulls int
}

// fb reads a flatbuffer with bounds checks: every read of another process's bytes is
// proven inside the buffer first.
type fb []byte

func (b fb) u16(off int) (int, error) {
	if off < 0 || off+2 > len(b) {
		return 0, badBatch("flatbuffer read of 2 bytes at %d outside %d bytes", off, len(b))
	}
	return int(binary.LittleEndian.Uint16(b[off:])), nil
}

func (b fb) u32(off int) (int64, error) {
	if off < 0 || off+4 > len(b) {
		return 0, badBatch("flatbuffer read of 4 bytes at %d outside %d bytes", off, len(b))
	}
	return int64(binary.LittleEndian.Uint32(b[off:])), nil
}

func (b fb) i64(off int) (int64, error) {
	if off < 0 || off+8 > len(b) {
		return 0, badBatch("flatbuffer read of 8 bytes at %d outside %d bytes", off, len(b))
	}
	return int64(binary.LittleEndian.Uint64(b[off:])), nil
}

// field returns the position of field i of the table at t, or -1 if absent.
func (b fb) field(t, i int) (int, error) {
	so, err := b.u32(t)
	if err != nil {
		return 0, err
	}
	vt := t - int(int32(uint32(so)))
	vlen, err := b.u16(vt)
	if err != nil {
		return 0, err
	}
	if vlen < 4 || vlen%2 != 0 {
		return 0, badBatch("flatbuffer vtable length %d", vlen)
	}
	if 4+2*i >= vlen {
		return -1, nil
	}
	fo, err := b.u16(vt + 4 + 2*i)
	if err != nil {
		return 0, err
	}
	if fo == 0 {
		return -1, nil
	}
	return t + fo, nil
}

// ref follows the uoffset stored at pos.
func (b fb) ref(pos int) (int, error) {
	o, err := b.u32(pos)
	if err != nil {
		return 0, err
	}
	p := pos + int(o)
	if p < 0 || p >= len(b) {
		return 0, badBatch("flatbuffer offset %d from %d outside %d bytes", o, pos, len(b))
	}
	return p, nil
}

// structs returns the start and count of a vector of 16-byte structs referenced at pos.
func (b fb) structs(pos int) (start, n int, err error) {
	v, err := b.ref(pos)
	if err != nil {
		return 0, 0, err
	}
	cnt, err := b.u32(v)
	if err != nil {
		return 0, 0, err
	}
	if int64(v)+4+cnt*16 > int64(len(b)) {
		return 0, 0, badBatch("flatbuffer vector of %d structs at %d outside %d bytes", cnt, v, len(b))
	}
	return v + 4, int(cnt), nil
}

// parseOutbound validates the Arrow IPC RecordBatch message of an OUTBOUND record (meta:
// the encapsulated prefix; body: the body bytes) against docs/FORMAT.md section 6 and
// returns views into it. rows is the record header's row_count.
func Parse(meta, body []byte, rows int32) (*View, error) {
	if len(meta) < 8 || binary.LittleEndian.Uint32(meta) != 0xFFFFFFFF {
		return nil, badBatch("no Arrow IPC continuation marker")
	}
	n := int(binary.LittleEndian.Uint32(meta[4:]))
	if n < 4 || 8+n > len(meta) {
		return nil, badBatch("Arrow metadata size %d outside the %d-byte prefix", n, len(meta))
	}
	b := fb(meta[8 : 8+n])
	msg, err := b.ref(0)
	if err != nil {
		return nil, err
	}
	// Message: 0 version (short), 1 header_type (ubyte), 2 header, 3 bodyLength (long).
	fv, err := b.field(msg, 0)
	if err != nil {
		return nil, err
	}
	version := 0
	if fv >= 0 {
		if version, err = b.u16(fv); err != nil {
			return nil, err
		}
	}
	if version != 4 {
		return nil, badBatch("Arrow metadata version %d, want 4 (V5)", version)
	}
	ft, err := b.field(msg, 1)
	if err != nil {
		return nil, err
	}
	if ft < 0 || ft >= len(b) || b[ft] != 3 {
		return nil, badBatch("Arrow message is not a RecordBatch")
	}
	fbl, err := b.field(msg, 3)
	if err != nil {
		return nil, err
	}
	var bodyLen int64
	if fbl >= 0 {
		if bodyLen, err = b.i64(fbl); err != nil {
			return nil, err
		}
	}
	if bodyLen != int64(len(body)) {
		return nil, badBatch("Arrow bodyLength %d, the record body has %d bytes", bodyLen, len(body))
	}
	fh, err := b.field(msg, 2)
	if err != nil {
		return nil, err
	}
	if fh < 0 {
		return nil, badBatch("Arrow message without a header")
	}
	rb, err := b.ref(fh)
	if err != nil {
		return nil, err
	}
	// RecordBatch: 0 length, 1 nodes, 2 buffers, 3 compression, 4 variadicBufferCounts.
	fl, err := b.field(rb, 0)
	if err != nil {
		return nil, err
	}
	var length int64
	if fl >= 0 {
		if length, err = b.i64(fl); err != nil {
			return nil, err
		}
	}
	if length != int64(rows) || rows < 0 {
		return nil, badBatch("RecordBatch length %d, the record header says row_count %d", length, rows)
	}
	if fc, err := b.field(rb, 3); err != nil {
		return nil, err
	} else if fc >= 0 {
		return nil, badBatch("compressed batch: OUTBOUND batches are never compressed")
	}
	fn, err := b.field(rb, 1)
	if err != nil {
		return nil, err
	}
	fbu, err := b.field(rb, 2)
	if err != nil {
		return nil, err
	}
	if fn < 0 || fbu < 0 {
		return nil, badBatch("RecordBatch without nodes or buffers")
	}
	ns, nn, err := b.structs(fn)
	if err != nil {
		return nil, err
	}
	bs, nb, err := b.structs(fbu)
	if err != nil {
		return nil, err
	}
	if nn != obNodes || nb != obBuffers {
		return nil, badBatch("%d field nodes and %d buffers, want %d and %d (the OUTBOUND schema)", nn, nb, obNodes, obBuffers)
	}
	var nodes [obNodes][2]int64
	for i := range nodes {
		nodes[i][0], _ = b.i64(ns + 16*i)
		nodes[i][1], _ = b.i64(ns + 16*i + 8)
	}
	r := int64(rows)
	e := nodes[obNodeEntries][0]
	if nodes[obNodeData][0] != r || nodes[obNodeAttrs][0] != r || nodes[obNodeOK][0] != r {
		return nil, badBatch("top-level field node lengths %d/%d/%d, want row_count %d", nodes[obNodeData][0], nodes[obNodeAttrs][0], nodes[obNodeOK][0], r)
	}
	if e < 0 || e > int64(len(body)) || nodes[obNodeKey][0] != e || nodes[obNodeValue][0] != e {
		return nil, badBatch("map entry node lengths %d/%d/%d must be equal and fit the body", e, nodes[obNodeKey][0], nodes[obNodeValue][0])
	}
	for _, i := range []int{obNodeData, obNodeAttrs, obNodeEntries, obNodeKey, obNodeValue} {
		if nodes[i][1] != 0 {
			return nil, badBatch("field node %d has null count %d; only ordering_key may hold nulls (data is required, attribute values must not be null)", i, nodes[i][1])
		}
	}
	v := &View{rows: int(rows), entries: int(e), okNulls: int(nodes[obNodeOK][1])}
	if v.okNulls < 0 || v.okNulls > v.rows {
		return nil, badBatch("ordering_key null count %d of %d rows", v.okNulls, v.rows)
	}
	for i := range obBuffers {
		off, _ := b.i64(bs + 16*i)
		ln, _ := b.i64(bs + 16*i + 8)
		if off < 0 || ln < 0 || off%8 != 0 || off > int64(len(body)) || ln > int64(len(body))-off {
			return nil, badBatch("buffer %d (offset %d, length %d) must start on 8 bytes inside the %d-byte body", i, off, ln, len(body))
		}
		v.bufs[i] = body[off : off+ln : off+ln]
	}
	if v.okNulls > 0 && len(v.bufs[obBufOKValid]) < (v.rows+7)/8 {
		return nil, badBatch("ordering_key validity buffer of %d bytes for %d rows with nulls", len(v.bufs[obBufOKValid]), v.rows)
	}
	if err := checkOffsets("data", v.bufs[obBufDataOff], v.rows, len(v.bufs[obBufData])); err != nil {
		return nil, err
	}
	if err := checkOffsets("attributes", v.bufs[obBufAttrsOff], v.rows, v.entries); err != nil {
		return nil, err
	}
	if err := checkOffsets("attribute key", v.bufs[obBufKeyOff], v.entries, len(v.bufs[obBufKey])); err != nil {
		return nil, err
	}
	if err := checkOffsets("attribute value", v.bufs[obBufValOff], v.entries, len(v.bufs[obBufVal])); err != nil {
		return nil, err
	}
	if err := checkOffsets("ordering_key", v.bufs[obBufOKOff], v.rows, len(v.bufs[obBufOK])); err != nil {
		return nil, err
	}
	return v, nil
}

// checkOffsets checks an int32 offsets buffer of n elements: n+1 non-decreasing values in
// [0, limit] (an empty buffer is allowed for n = 0).
func checkOffsets(what string, off []byte, n, limit int) error {
	if n == 0 && len(off) == 0 {
		return nil
	}
	if len(off) < 4*(n+1) {
		return badBatch("%s offsets buffer of %d bytes for %d elements", what, len(off), n)
	}
	prev := int32(binary.LittleEndian.Uint32(off))
	if prev < 0 || int(prev) > limit {
		return badBatch("%s offset 0 is %d, outside [0, %d]", what, prev, limit)
	}
	for i := 1; i <= n; i++ {
		o := int32(binary.LittleEndian.Uint32(off[4*i:]))
		if o < prev || int(o) > limit {
			return badBatch("%s offset %d is %d after %d (limit %d): offsets must not decrease or pass the values", what, i, o, prev, limit)
		}
		prev = o
	}
	return nil
}

// Rows returns the batch's row count.
func (v *View) Rows() int { return v.rows }

func (v *View) off(buf, i int) int {
	if len(v.bufs[buf]) == 0 {
		return 0
	}
	return int(binary.LittleEndian.Uint32(v.bufs[buf][4*i:]))
}

// Data returns row i's payload (pointing into the ring).
func (v *View) Data(i int) []byte {
	lo, hi := v.off(obBufDataOff, i), v.off(obBufDataOff, i+1)
	return v.bufs[obBufData][lo:hi:hi]
}

// Attrs returns the entry range [lo, hi) of row i's attributes.
func (v *View) Attrs(i int) (lo, hi int) {
	return v.off(obBufAttrsOff, i), v.off(obBufAttrsOff, i+1)
}

// Key and Value return entry e's attribute key and value bytes.
func (v *View) Key(e int) []byte {
	return v.bufs[obBufKey][v.off(obBufKeyOff, e):v.off(obBufKeyOff, e+1)]
}

func (v *View) Value(e int) []byte {
	return v.bufs[obBufVal][v.off(obBufValOff, e):v.off(obBufValOff, e+1)]
}

// OrderingKey returns row i's ordering key; nil when it is null or empty (Pub/Sub treats an
// empty ordering key as none).
func (v *View) OrderingKey(i int) []byte {
	if v.okNulls > 0 {
		if v.bufs[obBufOKValid][i>>3]&(1<<(i&7)) == 0 {
			return nil
		}
	}
	lo, hi := v.off(obBufOKOff, i), v.off(obBufOKOff, i+1)
	if lo == hi {
		return nil
	}
	return v.bufs[obBufOK][lo:hi]
}

// Check refuses rows that Pub/Sub would refuse for the whole request: strings that are not
// UTF-8 (protobuf refuses to encode them) and messages with neither data nor attributes.
// Messages larger than Pub/Sub's limits are left to Pub/Sub, whose error names the limit.
func (v *View) Check() error {
	for i := range v.rows {
		lo, hi := v.Attrs(i)
		if len(v.Data(i)) == 0 && lo == hi {
			return badBatch("row %d has empty data and no attributes; Pub/Sub refuses such a message", i)
		}
		for e := lo; e < hi; e++ {
			if k := v.Key(e); len(k) == 0 || !utf8.Valid(k) {
				return badBatch("row %d: attribute key %q is empty or not UTF-8", i, k)
			}
			if !utf8.Valid(v.Value(e)) {
				return badBatch("row %d: the value of attribute %q is not UTF-8", i, v.Key(e))
			}
		}
		if k := v.OrderingKey(i); k != nil && !utf8.Valid(k) {
			return badBatch("row %d: ordering key %q is not UTF-8", i, k)
		}
	}
	return nil
}

// RingString returns b as a string without copying. The string points into the ring
// record and must not be used after the record is released (pullerd holds a record until
// every Publish request that carries its rows has finished).
func RingString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
