package outbatch

import (
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// goldenRow is row i of testdata/golden/outbound-java.ring (GoldenOutboundRingTest.row).
func goldenRow(i int) Row {
	r := Row{Data: []byte(fmt.Sprintf("g-%d|", i) + strings.Repeat(string(rune('a'+i%26)), i*7%50))}
	if i%3 != 0 {
		r.Attrs = map[string]string{"i": strconv.Itoa(i), "k2": "v" + strconv.Itoa(i%4)}
	}
	if i%4 > 1 {
		r.Key = "key-" + strconv.Itoa(i%5) // i%4 == 0: null, i%4 == 1: empty (no key either)
	}
	return r
}

// TestGoldenOutboundRing reads the OUTBOUND ring that the Java sink wrote
// (jvm-reader GoldenOutboundRingTest) with pullerd's own parser: every record valid, batch
// ids consecutive, every row as the Java side built it.
func TestGoldenOutboundRing(t *testing.T) {
	root, err := jvm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(filepath.Join(root, "testdata/golden/outbound-java.ring"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ringbuf.ValidateHeader("outbound-java.ring", img, int64(len(img)), ringbuf.KindOutbound); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	hl := int64(le.Uint32(img[ringbuf.HeaderLengthOffset:]))
	mask := int64(le.Uint64(img[ringbuf.CapacityOffset:])) - 1
	tail := int64(le.Uint64(img[ringbuf.TailOffset:]))
	row, batch := 0, int64(0)
	for p := int64(le.Uint64(img[ringbuf.HeadOffset:])); p < tail; {
		rec := img[hl+p&mask:]
		length := int64(int32(le.Uint32(rec[ringbuf.RecLengthOffset:])))
		if length <= 0 {
			t.Fatalf("record at %d: length %d: the Java producer publishes only complete records", p, length)
		}
		if typ := ringbuf.RecordType(le.Uint32(rec[ringbuf.RecTypeOffset:])); typ != ringbuf.TypeArrow {
			t.Fatalf("record at %d: type %d", p, typ)
		}
		if pos := int64(le.Uint64(rec[ringbuf.RecPositionOffset:])); pos != p {
			t.Fatalf("record at %d says position %d", p, pos)
		}
		batch++
		if id := int64(le.Uint64(rec[ringbuf.RecBatchIDOffset:])); id != batch {
			t.Fatalf("record at %d: batch id %d, want %d", p, id, batch)
		}
		rows := int32(le.Uint32(rec[ringbuf.RecRowCountOffset:]))
		ml := int64(le.Uint32(rec[ringbuf.RecMetaLengthOffset:]))
		bo := int64(le.Uint32(rec[ringbuf.RecBodyOffsetOffset:]))
		bl := int64(le.Uint64(rec[ringbuf.RecBodyLengthOffset:]))
		if bo != ringbuf.Align(ringbuf.RecordHeaderLength+ml, ringbuf.RecordAlignment) || bo+bl != length {
			t.Fatalf("record at %d: meta %d, body at %d of %d, length %d", p, ml, bo, bl, length)
		}
		v, err := Parse(rec[ringbuf.RecordHeaderLength:ringbuf.RecordHeaderLength+ml], rec[bo:bo+bl], rows)
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		if err := v.Check(); err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		for i := range v.Rows() {
			want := goldenRow(row)
			lo, hi := v.Attrs(i)
			got := map[string]string{}
			for e := lo; e < hi; e++ {
				got[string(v.Key(e))] = string(v.Value(e))
			}
			if string(v.Data(i)) != string(want.Data) || !maps.Equal(got, want.Attrs) && !(len(got) == 0 && len(want.Attrs) == 0) ||
				string(v.OrderingKey(i)) != want.Key {
				t.Fatalf("row %d: data %q attrs %v key %q, want %q %v %q", row, v.Data(i), got, v.OrderingKey(i), want.Data, want.Attrs, want.Key)
			}
			row++
		}
		p += ringbuf.Align(length, ringbuf.RecordAlignment)
	}
	if row != 20 || batch != 3 {
		t.Fatalf("%d rows in %d batches, want 20 in 3", row, batch)
	}
}
