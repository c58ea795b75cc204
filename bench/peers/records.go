package peers

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/pubsub-shm/pubsub-shm/bench/synth"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// recordSource builds record batches of the message schema (arrowbatch.Schema) from the
// synthetic source the way an application using arrow-go would: array builders, reserved
// up front, one arrow.RecordBatch per batch, batches closed by the same Policy as the
// ring's (rows, or payload bytes). The uds and flight peers send these. Not safe for
// concurrent use.
type recordSource struct {
	src    *synth.Source
	policy arrowbatch.Policy
	b      *array.RecordBuilder
	ids    *array.StringBuilder
	ts     *array.TimestampBuilder
	data   *array.BinaryBuilder
	attrs  *array.MapBuilder
	okeys  *array.StringBuilder
	da     *array.Int32Builder
	rows   int // rows per batch
	size   int
	msg    arrowbatch.Message
}

func newRecordSource(src *synth.Source, size int, p arrowbatch.Policy) *recordSource {
	b := array.NewRecordBuilder(memory.DefaultAllocator, arrowbatch.Schema)
	rows := p.MaxRows
	if per := int64(size) + 8; per > 0 && p.MaxBytes/per < int64(rows) {
		rows = int(max(1, p.MaxBytes/per))
	}
	return &recordSource{src: src, policy: p, b: b, rows: rows, size: size,
		ids:   b.Field(arrowbatch.ColMessageID).(*array.StringBuilder),
		ts:    b.Field(arrowbatch.ColPublishTime).(*array.TimestampBuilder),
		data:  b.Field(arrowbatch.ColData).(*array.BinaryBuilder),
		attrs: b.Field(arrowbatch.ColAttributes).(*array.MapBuilder),
		okeys: b.Field(arrowbatch.ColOrderingKey).(*array.StringBuilder),
		da:    b.Field(arrowbatch.ColDeliveryAttempt).(*array.Int32Builder),
	}
}

// next builds the next batch: rows messages, or fewer when MaxBytes would be passed. The
// caller releases it.
func (r *recordSource) next() arrow.RecordBatch {
	r.b.Reserve(r.rows)
	r.data.ReserveData(r.rows * r.size)
	var payload int64
	n := 0
	for ; n < r.rows; n++ {
		r.src.Next(&r.msg)
		m := &r.msg
		payload += int64(len(m.ID) + len(m.Data))
		r.ids.Append(m.ID)
		r.ts.Append(arrow.Timestamp(m.PublishTimeUs))
		r.data.Append(m.Data)
		r.attrs.Append(true)
		if len(m.Attributes) > 0 {
			kb := r.attrs.KeyBuilder().(*array.StringBuilder)
			vb := r.attrs.ItemBuilder().(*array.StringBuilder)
			for k, v := range m.Attributes {
				kb.Append(k)
				vb.Append(v)
			}
		}
		if m.OrderingKey == "" {
			r.okeys.AppendNull()
		} else {
			r.okeys.Append(m.OrderingKey)
		}
		if m.DeliveryAttempt == 0 {
			r.da.AppendNull()
		} else {
			r.da.Append(m.DeliveryAttempt)
		}
		if payload >= r.policy.MaxBytes {
			n++
			break
		}
	}
	rec := r.b.NewRecordBatch()
	r.src.Recycle()
	return rec
}

func (r *recordSource) release() { r.b.Release() }
