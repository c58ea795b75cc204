package arrowbatch

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

func testRing(t testing.TB, capacity int64) *ringbuf.Ring {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "arrowbatch-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	schema, err := SchemaMessage()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ringbuf.Create(filepath.Join(d, "data-0.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: capacity, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// sampleMessages covers every column with and without nulls, empty payloads, empty and
// multi-entry attribute maps, and non-ASCII strings.
func sampleMessages(n int, seed int64) []Message {
	rng := rand.New(rand.NewSource(seed))
	out := make([]Message, n)
	for i := range out {
		data := make([]byte, rng.Intn(300))
		rng.Read(data)
		m := Message{ID: fmt.Sprintf("id-%d-ü", i), PublishTimeUs: 1_700_000_000_000_000 + int64(i), Data: data}
		switch i % 4 {
		case 0:
		case 1:
			m.Attributes = map[string]string{"k": "v"}
		case 2:
			m.Attributes = map[string]string{"a": "", "b": "x", "日本": "語"}
		case 3:
			m.Attributes = map[string]string{}
		}
		if i%3 != 0 {
			m.OrderingKey = fmt.Sprintf("key-%d", i%5)
		}
		if i%2 == 0 {
			m.DeliveryAttempt = int32(i%7 + 1)
		}
		out[i] = m
	}
	return out
}

// readBack reads one ARROW record with arrow-go's own IPC reader.
func readBack(t testing.TB, schemaMsg []byte, rec ringbuf.Record) arrow.RecordBatch {
	t.Helper()
	var stream bytes.Buffer
	stream.Write(schemaMsg)
	stream.Write(rec.Meta)
	stream.Write(rec.Body)
	stream.Write([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0})
	rd, err := ipc.NewReader(&stream, ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		t.Fatal(err)
	}
	if !rd.Next() {
		t.Fatalf("no record batch: %v", rd.Err())
	}
	b := rd.RecordBatch()
	b.Retain()
	return b
}

func checkEqual(t *testing.T, b arrow.RecordBatch, want []Message) {
	t.Helper()
	if int(b.NumRows()) != len(want) {
		t.Fatalf("rows %d, want %d", b.NumRows(), len(want))
	}
	if !b.Schema().Equal(Schema) {
		t.Fatalf("schema %v", b.Schema())
	}
	ids := b.Column(ColMessageID).(*array.String)
	ts := b.Column(ColPublishTime).(*array.Timestamp)
	data := b.Column(ColData).(*array.Binary)
	attrs := b.Column(ColAttributes).(*array.Map)
	keys := attrs.Keys().(*array.String)
	vals := attrs.Items().(*array.String)
	ok := b.Column(ColOrderingKey).(*array.String)
	da := b.Column(ColDeliveryAttempt).(*array.Int32)
	for i, m := range want {
		if ids.Value(i) != m.ID || int64(ts.Value(i)) != m.PublishTimeUs || !bytes.Equal(data.Value(i), m.Data) {
			t.Fatalf("row %d: id %q ts %d data %d bytes", i, ids.Value(i), ts.Value(i), len(data.Value(i)))
		}
		start, end := attrs.ValueOffsets(i)
		got := map[string]string{}
		for j := start; j < end; j++ {
			got[keys.Value(int(j))] = vals.Value(int(j))
		}
		if len(got) != len(m.Attributes) || attrs.IsNull(i) {
			t.Fatalf("row %d attributes %v, want %v", i, got, m.Attributes)
		}
		for k, v := range m.Attributes {
			if got[k] != v {
				t.Fatalf("row %d attribute %q=%q, want %q", i, k, got[k], v)
			}
		}
		if (m.OrderingKey == "") != ok.IsNull(i) || (m.OrderingKey != "" && ok.Value(i) != m.OrderingKey) {
			t.Fatalf("row %d ordering key null=%v %q, want %q", i, ok.IsNull(i), ok.Value(i), m.OrderingKey)
		}
		if (m.DeliveryAttempt == 0) != da.IsNull(i) || (m.DeliveryAttempt != 0 && da.Value(i) != m.DeliveryAttempt) {
			t.Fatalf("row %d delivery attempt null=%v %d, want %d", i, da.IsNull(i), da.Value(i), m.DeliveryAttempt)
		}
	}
	if err := b.Column(ColAttributes).(*array.Map).ValidateFull(); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTripThroughArrowGo(t *testing.T) {
	r := testRing(t, 1<<20)
	w, _ := ringbuf.NewWriter(r)
	rd, _ := ringbuf.NewReader(r)
	for _, n := range []int{1, 7, 8, 9, 100, 1000} {
		want := sampleMessages(n, int64(n))
		var b Batch
		for _, m := range want {
			b.Add(m)
		}
		id, rows, err := b.Encode(context.Background(), w, nil)
		if err != nil || rows != n || id == 0 {
			t.Fatalf("encode %d: id %d rows %d err %v", n, id, rows, err)
		}
		if b.Len() != 0 {
			t.Fatal("batch not reset after encode")
		}
		rec, ok, err := rd.Poll()
		if !ok || err != nil || rec.Type != ringbuf.TypeArrow || rec.BatchID != id || rec.RowCount != int32(n) {
			t.Fatalf("poll: %+v %v %v", rec, ok, err)
		}
		batch := readBack(t, r.Schema(), rec)
		checkEqual(t, batch, want)
		batch.Release()
		rd.Release(rec.Position)
	}
}

func TestBuffersAligned(t *testing.T) {
	var b Batch
	for _, m := range sampleMessages(33, 3) {
		b.Add(m)
	}
	_, bodyLen := b.Sizes()
	for i, bf := range b.bufs {
		if bf[0]%64 != 0 || bf[0]+bf[1] > bodyLen {
			t.Errorf("buffer %d at %d len %d (body %d): not 64-aligned or outside the body", i, bf[0], bf[1], bodyLen)
		}
	}
	if bodyLen%64 != 0 {
		t.Errorf("body length %d", bodyLen)
	}
	// Every validity bitmap is written, null count 0 or not, so Arrow Java never
	// allocates a replacement (arrow-go's reader drops them, so check the layout).
	for _, v := range []struct{ buf, rows int }{{0, 33}, {3, 33}, {5, 33}, {8, 33}, {17, 33}, {20, 33}} {
		if b.bufs[v.buf][1] != int64((v.rows+7)/8) {
			t.Errorf("validity buffer %d has %d bytes, want %d", v.buf, b.bufs[v.buf][1], (v.rows+7)/8)
		}
	}
	for _, i := range []int{10, 11, 14} {
		if b.bufs[i][1] != (b.entries+7)/8 || b.entries == 0 {
			t.Errorf("entries validity buffer %d has %d bytes for %d entries", i, b.bufs[i][1], b.entries)
		}
	}
}
