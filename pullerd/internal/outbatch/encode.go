package outbatch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Row is one message of an OUTBOUND batch.
type Row struct {
	Data  []byte
	Attrs map[string]string
	Key   string // "" is written as null
}

// Encode returns rows as one Arrow IPC RecordBatch message of Schema, written by arrow-go's
// own IPC writer (the reference encoder, independent of the JVM sink's in-place layout):
// the encapsulated prefix (continuation, size, flatbuffer, padding) and the body. Attributes
// are written in key order. For tests and tools; the sink writes its batches in place.
func Encode(rows []Row) (meta, body []byte, err error) {
	mem := memory.NewGoAllocator()
	b := array.NewRecordBuilder(mem, Schema)
	defer b.Release()
	db := b.Field(0).(*array.BinaryBuilder)
	mb := b.Field(1).(*array.MapBuilder)
	kb, vb := mb.KeyBuilder().(*array.StringBuilder), mb.ItemBuilder().(*array.StringBuilder)
	ob := b.Field(2).(*array.StringBuilder)
	keys := []string{}
	for _, r := range rows {
		db.Append(r.Data)
		mb.Append(true)
		keys = keys[:0]
		for k := range r.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			kb.Append(k)
			vb.Append(r.Attrs[k])
		}
		if r.Key == "" {
			ob.AppendNull()
		} else {
			ob.Append(r.Key)
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(Schema), ipc.WithAllocator(mem))
	if err := w.Write(rec); err != nil {
		return nil, nil, fmt.Errorf("outbatch: encode: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, nil, fmt.Errorf("outbatch: encode: %w", err)
	}
	s := buf.Bytes()
	msgLen := func(s []byte) (int, error) {
		if len(s) < 8 || binary.LittleEndian.Uint32(s) != 0xFFFFFFFF {
			return 0, fmt.Errorf("outbatch: encode: no continuation marker in arrow-go's stream")
		}
		return 8 + int(binary.LittleEndian.Uint32(s[4:])), nil
	}
	n, err := msgLen(s) // the schema message (no body)
	if err != nil {
		return nil, nil, err
	}
	s = s[n:]
	if n, err = msgLen(s); err != nil {
		return nil, nil, err
	}
	meta = bytes.Clone(s[:n])
	body = bytes.Clone(s[n : len(s)-8]) // the end-of-stream marker follows the body
	return meta, body, nil
}
