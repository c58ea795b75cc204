package outbatch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

func encode(t testing.TB, rows []Row) (meta, body []byte) {
	t.Helper()
	meta, body, err := Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	return meta, body
}

// testRows makes n rows: data embeds the number, attributes vary (none for every fourth
// row, UTF-8 keys and empty values on some), ordering keys cycle (none for every third row).
func testRows(start, n int) []Row {
	rows := make([]Row, n)
	for i := range rows {
		k := start + i
		r := Row{Data: fmt.Appendf(nil, "row-%08d|%s", k, strings.Repeat("d", k%40))}
		if k%4 != 0 {
			r.Attrs = map[string]string{"row": fmt.Sprint(k), "ü": strings.Repeat("v", k%5)}
		}
		if k%3 != 0 {
			r.Key = fmt.Sprint("key-", k%7)
		}
		rows[i] = r
	}
	return rows
}

func TestParse(t *testing.T) {
	rows := testRows(0, 50)
	rows = append(rows, Row{Data: []byte{}, Attrs: map[string]string{"only": "attrs"}})
	meta, body := encode(t, rows)
	v, err := Parse(meta, body, int32(len(rows)))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(); err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if !bytes.Equal(v.Data(i), r.Data) {
			t.Fatalf("row %d data %q, want %q", i, v.Data(i), r.Data)
		}
		lo, hi := v.Attrs(i)
		got := map[string]string{}
		for e := lo; e < hi; e++ {
			got[string(v.Key(e))] = string(v.Value(e))
		}
		if !maps.Equal(got, r.Attrs) && !(len(got) == 0 && len(r.Attrs) == 0) {
			t.Fatalf("row %d attributes %v, want %v", i, got, r.Attrs)
		}
		if string(v.OrderingKey(i)) != r.Key {
			t.Fatalf("row %d ordering key %q, want %q", i, v.OrderingKey(i), r.Key)
		}
	}
	// Every truncation and every single-byte corruption of the metadata is refused or
	// parsed without panicking.
	for n := 0; n < len(meta); n++ {
		_, _ = Parse(meta[:n], body, int32(len(rows)))
	}
	for i := 8; i < len(meta); i++ {
		m := bytes.Clone(meta)
		m[i] ^= 0xA5
		if v, err := Parse(m, body, int32(len(rows))); err == nil {
			_ = v.Check()
			for r := range v.Rows() {
				_, _ = v.Data(r), v.OrderingKey(r)
			}
		}
	}
	if _, err := Parse(meta, body[:len(body)-8], int32(len(rows))); err == nil {
		t.Fatal("a short body was accepted")
	}
}

func FuzzParse(f *testing.F) {
	meta, body := encode(f, testRows(0, 20))
	f.Add(meta, body, int32(20))
	// the batches the Java sink wrote (testdata/golden/outbound-java.ring): its layout, gaps included
	if root, err := jvm.RepoRoot(); err == nil {
		if img, err := os.ReadFile(filepath.Join(root, "testdata/golden/outbound-java.ring")); err == nil && len(img) > 8192 {
			le := binary.LittleEndian
			rec := img[le.Uint32(img[ringbuf.HeaderLengthOffset:]):]
			ml := int(le.Uint32(rec[ringbuf.RecMetaLengthOffset:]))
			bo := int(le.Uint32(rec[ringbuf.RecBodyOffsetOffset:]))
			bl := int(le.Uint64(rec[ringbuf.RecBodyLengthOffset:]))
			f.Add(rec[ringbuf.RecordHeaderLength:ringbuf.RecordHeaderLength+ml], rec[bo:bo+bl], int32(le.Uint32(rec[ringbuf.RecRowCountOffset:])))
		}
	}
	f.Fuzz(func(t *testing.T, meta, body []byte, rows int32) {
		v, err := Parse(meta, body, rows)
		if err != nil {
			return
		}
		_ = v.Check()
		for r := range v.Rows() {
			_, _ = v.Data(r), v.OrderingKey(r)
			lo, hi := v.Attrs(r)
			for e := lo; e < hi; e++ {
				_, _ = v.Key(e), v.Value(e)
			}
		}
	})
}

// TestParseMutations feeds Parse 100,000 random mutations (bytes of the metadata and body,
// and the row count) of a valid batch: it must refuse or accept each without panicking, and
// what it accepts must be safe to read (a fixed seed: a deterministic regression test beside
// FuzzParse; it found an offset + length that overflowed int64).
func TestParseMutations(t *testing.T) {
	meta, body := encode(t, testRows(0, 20))
	rng := rand.New(rand.NewSource(1))
	for it := 0; it < 100000; it++ {
		m, b := bytes.Clone(meta), bytes.Clone(body)
		for k := 0; k < 1+rng.Intn(4); k++ {
			if rng.Intn(2) == 0 {
				m[rng.Intn(len(m))] = byte(rng.Intn(256))
			} else {
				b[rng.Intn(len(b))] = byte(rng.Intn(256))
			}
		}
		rows := int32(20)
		if rng.Intn(10) == 0 {
			rows = rng.Int31()
		}
		v, err := Parse(m, b, rows)
		if err != nil {
			continue
		}
		_ = v.Check()
		for r := range v.Rows() {
			_, _ = v.Data(r), v.OrderingKey(r)
			lo, hi := v.Attrs(r)
			for e := lo; e < hi; e++ {
				_, _ = v.Key(e), v.Value(e)
			}
		}
	}
}
