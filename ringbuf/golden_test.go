package ringbuf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the Go-written golden files in testdata/golden")

const goldenDir = "../testdata/golden"

// goldenDataRing builds the deterministic DATA ring of testdata/golden/data-raw.ring:
// RAW records of assorted sizes, some released, a padding record and a wrap.
func goldenDataRing(t *testing.T) []byte {
	var clock int64 = 1_700_000_000_000_000_000
	saved := nowNs
	nowNs = func() int64 { clock += 1000; return clock }
	defer func() { nowNs = saved }()
	dir := shmDir(t)
	r, err := Create(filepath.Join(dir, "data-3.ring"), CreateOptions{Kind: KindData, Capacity: 4096, Partition: 3,
		InstanceID: 0x1122334455667788, CreatedNs: 1_700_000_000_000_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, _ := NewWriter(r)
	rd, _ := NewReader(r)
	for _, n := range []int{0, 1, 3, 4, 63, 64, 100, 1000, 1500} {
		writePattern(t, w, n)
	}
	for i := 0; i < 8; i++ { // read eight of nine, release them
		rec, ok, err := rd.Poll()
		if !ok || err != nil {
			t.Fatal(ok, err)
		}
		rd.Release(rec.Position)
	}
	for _, n := range []int{1200, 5} { // needs a padding record and wraps
		writePattern(t, w, n)
	}
	// Fixed identities so the file is byte-for-byte reproducible.
	le := binary.LittleEndian
	for off, v := range map[int]int64{ProducerPidOffset: 4242, ProducerStartOffset: 777, ProducerHeartbeatOffset: 123456789, ProducerClosedOffset: 1,
		ConsumerPidOffset: 4343, ConsumerStartOffset: 888, ConsumerHeartbeatOffset: 987654321, ConsumerClosedOffset: 0} {
		le.PutUint64(r.mem[off:], uint64(v))
	}
	return bytes.Clone(r.mem)
}

// writePattern writes a RAW record whose byte i is (batch_id*31 + i) & 0xFF.
func writePattern(t *testing.T, w *Writer, n int) {
	c, err := w.TryClaim(TypeRaw, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	b := c.Body()
	for i := range b {
		b[i] = byte(w.NextBatchID()*31 + int64(i))
	}
	if _, err := c.Commit(1); err != nil {
		t.Fatal(err)
	}
}

func isPattern(b []byte, id int64) bool {
	for i := range b {
		if b[i] != byte(id*31+int64(i)) {
			return false
		}
	}
	return true
}

// describeData writes the sidecar that JUnit checks: one key=value line per header field,
// then one line per record from head to tail.
func describeData(mem []byte) string {
	le := binary.LittleEndian
	var b strings.Builder
	b.WriteString("# testdata/golden/data-raw.ring: RAW records, byte i of batch b is (b*31 + i) & 0xFF; written by ringbuf/golden_test.go (go test ./ringbuf -run Golden -update)\n")
	u32 := func(name string, off int) { fmt.Fprintf(&b, "%s=%d\n", name, le.Uint32(mem[off:])) }
	u64 := func(name string, off int) { fmt.Fprintf(&b, "%s=%d\n", name, le.Uint64(mem[off:])) }
	i64 := func(name string, off int) { fmt.Fprintf(&b, "%s=%d\n", name, int64(le.Uint64(mem[off:]))) }
	u64("magic", MagicOffset)
	u32("layout_version", VersionOffset)
	u32("ring_kind", KindOffset)
	u32("header_length", HeaderLengthOffset)
	u32("record_alignment", AlignmentOffset)
	u64("capacity", CapacityOffset)
	u64("file_length", FileLengthOffset)
	u64("ring_instance_id", InstanceIDOffset)
	i64("created_unix_ns", CreatedOffset)
	fmt.Fprintf(&b, "partition=%d\n", int32(le.Uint32(mem[PartitionOffset:])))
	u32("max_record_length", MaxRecordLengthOffset)
	for _, f := range []struct {
		n   string
		off int
	}{{"producer_pid", ProducerPidOffset}, {"producer_start_ticks", ProducerStartOffset}, {"producer_heartbeat_ns", ProducerHeartbeatOffset}, {"producer_closed", ProducerClosedOffset},
		{"consumer_pid", ConsumerPidOffset}, {"consumer_start_ticks", ConsumerStartOffset}, {"consumer_heartbeat_ns", ConsumerHeartbeatOffset}, {"consumer_closed", ConsumerClosedOffset},
		{"tail_position", TailOffset}, {"head_position", HeadOffset}} {
		i64(f.n, f.off)
	}
	u32("schema_length", SchemaLengthOffset)
	u32("schema_offset", SchemaOffsetOffset)
	hl := int64(le.Uint32(mem[HeaderLengthOffset:]))
	capacity := int64(le.Uint64(mem[CapacityOffset:]))
	head, tail := int64(le.Uint64(mem[HeadOffset:])), int64(le.Uint64(mem[TailOffset:]))
	for p := head; p < tail; {
		h := mem[hl+p&(capacity-1):]
		l := int64(int32(le.Uint32(h[RecLengthOffset:])))
		bo := int64(le.Uint32(h[RecBodyOffsetOffset:]))
		bl := int64(le.Uint64(h[RecBodyLengthOffset:]))
		typ := int32(le.Uint32(h[RecTypeOffset:]))
		var crc uint32
		if typ != int32(TypePadding) {
			crc = crc32.Checksum(h[bo:bo+bl], castagnoli)
		}
		fmt.Fprintf(&b, "record position=%d type=%d batch_id=%d length=%d state=%d body_length=%d row_count=%d produced_unix_ns=%d crc32c=%d\n",
			p, typ, int64(le.Uint64(h[RecBatchIDOffset:])), l, int32(le.Uint32(h[RecStateOffset:])), bl,
			int32(le.Uint32(h[RecRowCountOffset:])), int64(le.Uint64(h[RecProducedOffset:])), crc)
		p += Align(l, RecordAlignment)
	}
	return b.String()
}

func TestGoldenDataRing(t *testing.T) {
	mem := goldenDataRing(t)
	desc := describeData(mem)
	ringPath, txtPath := filepath.Join(goldenDir, "data-raw.ring"), filepath.Join(goldenDir, "data-raw.txt")
	if *update {
		if err := os.WriteFile(ringPath, mem, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(txtPath, []byte(desc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, err := os.ReadFile(ringPath)
	if err != nil {
		t.Fatalf("%v (regenerate with go test ./ringbuf -run Golden -update)", err)
	}
	if !bytes.Equal(old, mem) {
		t.Fatalf("%s differs from what the writer produces now: the layout changed; update docs/FORMAT.md, both descriptors and the golden files together (-update)", ringPath)
	}
	oldDesc, _ := os.ReadFile(txtPath)
	if string(oldDesc) != desc {
		t.Fatalf("%s is stale (-update)", txtPath)
	}
	if !strings.Contains(desc, "type=2") || !strings.Contains(desc, "state=0") {
		t.Fatalf("golden ring lacks a padding record or an unreleased record:\n%s", desc)
	}
	// The Go reader reads the golden file back, validating every record.
	dir := shmDir(t)
	p := filepath.Join(dir, "data-3.ring")
	os.WriteFile(p, old, 0o600)
	r, err := Open(p, OpenOptions{Kind: KindData})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd := &Reader{r: r, path: p, pos: r.Head(), stuckAt: -1}
	rd.polled.Store(rd.pos)
	n := 0
	for {
		rec, ok, err := rd.Poll()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if !isPattern(rec.Body, rec.BatchID) {
			t.Errorf("batch %d checksum", rec.BatchID)
		}
		n++
	}
	if n != 3 {
		t.Errorf("read %d records from head to tail, want 3", n)
	}
}

// TestGoldenCommitRingFromJava checks the commit ring that the Java CommitRingWriter
// wrote (jvm-reader's GoldenCommitRingTest, -Dgolden.update=true) against its sidecar.
func TestGoldenCommitRingFromJava(t *testing.T) {
	ringBytes, err := os.ReadFile(filepath.Join(goldenDir, "commit-java.ring"))
	if err != nil {
		t.Fatalf("%v: the Java side writes it (mvn -f jvm-reader test -Dgolden.update=true)", err)
	}
	f, err := os.Open(filepath.Join(goldenDir, "commit-java.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := ValidateHeader("commit-java.ring", ringBytes, int64(len(ringBytes)), KindCommit); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	hdr := map[string]int{"magic": MagicOffset, "layout_version": VersionOffset, "ring_kind": KindOffset, "header_length": HeaderLengthOffset,
		"record_alignment": AlignmentOffset, "capacity": CapacityOffset, "file_length": FileLengthOffset, "ring_instance_id": InstanceIDOffset,
		"created_unix_ns": CreatedOffset, "partition": PartitionOffset, "max_record_length": MaxRecordLengthOffset,
		"producer_pid": ProducerPidOffset, "producer_start_ticks": ProducerStartOffset, "producer_heartbeat_ns": ProducerHeartbeatOffset, "producer_closed": ProducerClosedOffset,
		"consumer_pid": ConsumerPidOffset, "consumer_start_ticks": ConsumerStartOffset, "consumer_heartbeat_ns": ConsumerHeartbeatOffset, "consumer_closed": ConsumerClosedOffset,
		"tail_position": TailOffset, "head_position": HeadOffset, "schema_length": SchemaLengthOffset, "schema_offset": SchemaOffsetOffset}
	width := map[string]int{"layout_version": 4, "ring_kind": 4, "header_length": 4, "record_alignment": 4, "partition": 4, "max_record_length": 4, "schema_length": 4, "schema_offset": 4}
	sc := bufio.NewScanner(f)
	records, headers := 0, 0
	hl := int64(le.Uint32(ringBytes[HeaderLengthOffset:]))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "record "); ok {
			kv := map[string]string{}
			for _, f := range strings.Fields(rest) {
				k, v, _ := strings.Cut(f, "=")
				kv[k] = v
			}
			pos, _ := strconv.ParseInt(kv["position"], 10, 64)
			off := hl + pos&(int64(le.Uint64(ringBytes[CapacityOffset:]))-1)
			rec, err := ParseCommitRecord("commit-java.ring", ringBytes[off:off+CommitRecordLength], pos)
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("type=%d partition=%d first=%d last=%d instance=%d pid=%d produced_ns=%d",
				rec.Type, rec.Partition, rec.FirstBatchID, rec.LastBatchID, rec.DataInstanceID, rec.ProducerPid, rec.ProducedNs)
			want := fmt.Sprintf("type=%s partition=%s first=%s last=%s instance=%s pid=%s produced_ns=%s",
				kv["type"], kv["partition"], kv["first"], kv["last"], kv["instance"], kv["pid"], kv["produced_ns"])
			if got != want {
				t.Errorf("record at %d:\n got %s\nwant %s", pos, got, want)
			}
			records++
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		off, known := hdr[k]
		if !ok || !known {
			t.Fatalf("unknown sidecar line %q", line)
		}
		var got string
		switch {
		case width[k] == 4 && k == "partition":
			got = strconv.FormatInt(int64(int32(le.Uint32(ringBytes[off:]))), 10)
		case width[k] == 4:
			got = strconv.FormatUint(uint64(le.Uint32(ringBytes[off:])), 10)
		case k == "magic" || k == "ring_instance_id" || k == "capacity" || k == "file_length":
			got = strconv.FormatUint(le.Uint64(ringBytes[off:]), 10)
		default:
			got = strconv.FormatInt(int64(le.Uint64(ringBytes[off:])), 10)
		}
		if got != v {
			t.Errorf("header %s: file has %s, sidecar says %s", k, got, v)
		}
		headers++
	}
	if records != 3 || headers < 20 {
		t.Errorf("sidecar has %d records and %d header lines; want 3 records and every header field", records, headers)
	}
}
