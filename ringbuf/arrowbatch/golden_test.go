package arrowbatch

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/data-arrow.*")

const goldenDir = "../../testdata/golden"

type goldenRow struct {
	BatchID         int64             `json:"batch_id"`
	Row             int               `json:"row"`
	MessageID       string            `json:"message_id"`
	PublishTimeUs   int64             `json:"publish_time_us"`
	DataHex         string            `json:"data_hex"`
	Attributes      map[string]string `json:"attributes"`
	AttributeKeys   []string          `json:"attribute_keys"` // in the order written
	OrderingKey     *string           `json:"ordering_key"`
	DeliveryAttempt *int32            `json:"delivery_attempt"`
}

// TestGoldenArrowRing writes testdata/golden/data-arrow.ring: a DATA ring with the
// message schema in its header and three ARROW batches covering every column, nulls,
// empty payloads and maps; data-arrow.jsonl lists every row for JUnit to compare field by
// field (GoldenArrowRingTest).
func TestGoldenArrowRing(t *testing.T) {
	schema, err := SchemaMessage()
	if err != nil {
		t.Fatal(err)
	}
	d := t.TempDir()
	os.Chmod(d, 0o700)
	r, err := ringbuf.Create(filepath.Join(d, "data-0.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: 1 << 16,
		Schema: schema, InstanceID: 0xA1B2C3D4E5F60718, CreatedNs: 1_700_000_000_000_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, _ := ringbuf.NewWriter(r)
	var rows []goldenRow
	for bi, n := range []int{1, 9, 40} {
		msgs := sampleMessages(n, int64(100+bi))
		b := Batch{SortAttributes: true}
		for _, m := range msgs {
			b.Add(m)
		}
		id, _, err := b.Encode(context.Background(), w, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			g := goldenRow{BatchID: id, Row: i, MessageID: m.ID, PublishTimeUs: m.PublishTimeUs, DataHex: hex.EncodeToString(m.Data),
				Attributes: m.Attributes, AttributeKeys: sortedKeys(m.Attributes)}
			if g.Attributes == nil {
				g.Attributes = map[string]string{}
			}
			if m.OrderingKey != "" {
				k := m.OrderingKey
				g.OrderingKey = &k
			}
			if m.DeliveryAttempt != 0 {
				a := m.DeliveryAttempt
				g.DeliveryAttempt = &a
			}
			rows = append(rows, g)
		}
	}
	mem := bytes.Clone(unsafeMem(t, r.Path()))
	// Produced-at stamps vary run to run: pin them for a byte-stable golden file.
	pinProduced(mem)
	var jl strings.Builder
	for _, g := range rows {
		b, _ := json.Marshal(g)
		jl.Write(b)
		jl.WriteByte('\n')
	}
	ringPath, jsonPath := filepath.Join(goldenDir, "data-arrow.ring"), filepath.Join(goldenDir, "data-arrow.jsonl")
	if *update {
		os.WriteFile(ringPath, mem, 0o644)
		os.WriteFile(jsonPath, []byte(jl.String()), 0o644)
	}
	old, err := os.ReadFile(ringPath)
	if err != nil {
		t.Fatalf("%v (go test ./ringbuf/arrowbatch -run Golden -update)", err)
	}
	if !bytes.Equal(old, mem) {
		t.Fatalf("%s differs from what the encoder writes now; if the change is intended, update docs/FORMAT.md and regenerate (-update)", ringPath)
	}
	if oldJ, _ := os.ReadFile(jsonPath); string(oldJ) != jl.String() {
		t.Fatalf("%s is stale (-update)", jsonPath)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := []string{}
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func unsafeMem(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pinProduced sets every record's produced_unix_ns to a fixed value.
func pinProduced(mem []byte) {
	le := binary.LittleEndian
	hl := int64(le.Uint32(mem[ringbuf.HeaderLengthOffset:]))
	capacity := int64(le.Uint64(mem[ringbuf.CapacityOffset:]))
	head, tail := int64(le.Uint64(mem[ringbuf.HeadOffset:])), int64(le.Uint64(mem[ringbuf.TailOffset:]))
	for _, off := range []int{ringbuf.ProducerPidOffset, ringbuf.ProducerStartOffset, ringbuf.ProducerHeartbeatOffset} {
		le.PutUint64(mem[off:], uint64(4242+off))
	}
	for p := head; p < tail; {
		h := mem[hl+p&(capacity-1):]
		l := int64(int32(le.Uint32(h)))
		le.PutUint64(h[ringbuf.RecProducedOffset:], uint64(time.Unix(1_700_000_000, 0).UnixNano()))
		p += ringbuf.Align(l, 64)
	}
}
