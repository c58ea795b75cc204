// Package arrowbatch writes Pub/Sub messages as Arrow IPC record batches straight into a
// DATA ring (docs/FORMAT.md section 5): the payload bytes are copied once, from the
// message into shared memory, and the flatbuffer metadata is built without arrow-go's
// array builders, so nothing is staged in between.
package arrowbatch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// Column indexes of the message schema.
const (
	ColMessageID = iota
	ColPublishTime
	ColData
	ColAttributes
	ColOrderingKey
	ColDeliveryAttempt
)

// Schema is the Arrow schema of every DATA ring that pullerd feeds (docs/FORMAT.md
// section 5). The batch id and ring position live in the record header, not in rows.
var Schema = arrow.NewSchema([]arrow.Field{
	{Name: "message_id", Type: arrow.BinaryTypes.String, Nullable: false},
	{Name: "publish_time", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: false},
	{Name: "data", Type: arrow.BinaryTypes.Binary, Nullable: false},
	{Name: "attributes", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String), Nullable: false},
	{Name: "ordering_key", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "delivery_attempt", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
}, nil)

var (
	schemaOnce sync.Once
	schemaMsg  []byte
	schemaErr  error
)

// SchemaMessage returns Schema as one Arrow IPC encapsulated message (continuation,
// length, flatbuffer, padding), the form stored in a ring header. Do not modify it.
func SchemaMessage() ([]byte, error) {
	schemaOnce.Do(func() { schemaMsg, schemaErr = EncodeSchema(Schema) })
	return schemaMsg, schemaErr
}

// EncodeSchema returns the Arrow IPC encapsulated Schema message of s.
func EncodeSchema(s *arrow.Schema) ([]byte, error) {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(s))
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("arrowbatch: encode schema: %w", err)
	}
	b := buf.Bytes()
	if len(b) < 8 || binary.LittleEndian.Uint32(b) != 0xFFFFFFFF {
		return nil, fmt.Errorf("arrowbatch: unexpected IPC stream prefix % x", b[:min(8, len(b))])
	}
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if 8+n > len(b) {
		return nil, fmt.Errorf("arrowbatch: schema message length %d exceeds stream (%d bytes)", n, len(b))
	}
	return bytes.Clone(b[:8+n]), nil
}
