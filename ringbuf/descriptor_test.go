package ringbuf

import "testing"

// TestDescriptorOffsets checks every offset against the numbers printed in
// docs/FORMAT.md, not only the totals.
func TestDescriptorOffsets(t *testing.T) {
	cases := []struct {
		name      string
		got, want int
	}{
		{"magic", MagicOffset, 0},
		{"layout_version", VersionOffset, 8},
		{"ring_kind", KindOffset, 12},
		{"header_length", HeaderLengthOffset, 16},
		{"record_alignment", AlignmentOffset, 20},
		{"capacity", CapacityOffset, 24},
		{"file_length", FileLengthOffset, 32},
		{"ring_instance_id", InstanceIDOffset, 40},
		{"created_unix_ns", CreatedOffset, 48},
		{"partition", PartitionOffset, 56},
		{"max_record_length", MaxRecordLengthOffset, 60},
		{"static block end", staticBlockEnd, 64},
		{"producer_pid", ProducerPidOffset, 64},
		{"producer_start_ticks", ProducerStartOffset, 72},
		{"producer_heartbeat_ns", ProducerHeartbeatOffset, 80},
		{"producer_closed", ProducerClosedOffset, 88},
		{"consumer_pid", ConsumerPidOffset, 128},
		{"consumer_start_ticks", ConsumerStartOffset, 136},
		{"consumer_heartbeat_ns", ConsumerHeartbeatOffset, 144},
		{"consumer_closed", ConsumerClosedOffset, 152},
		{"tail_position", TailOffset, 192},
		{"head_position", HeadOffset, 256},
		{"schema_length", SchemaLengthOffset, 512},
		{"schema_offset", SchemaOffsetOffset, 516},
		{"schema bytes", SchemaStart, 1024},
		{"header length", DefaultHeaderLength, 4096},

		{"record length", RecLengthOffset, 0},
		{"record type", RecTypeOffset, 4},
		{"record batch_id", RecBatchIDOffset, 8},
		{"record row_count", RecRowCountOffset, 16},
		{"record state", RecStateOffset, 20},
		{"record meta_offset", RecMetaOffsetOffset, 24},
		{"record meta_length", RecMetaLengthOffset, 28},
		{"record body_offset", RecBodyOffsetOffset, 32},
		{"record reserved", RecReservedOffset, 36},
		{"record body_length", RecBodyLengthOffset, 40},
		{"record produced_unix_ns", RecProducedOffset, 48},
		{"record position", RecPositionOffset, 56},
		{"record header length", RecordHeaderLength, 64},

		{"commit length", CmtLengthOffset, 0},
		{"commit type", CmtTypeOffset, 4},
		{"commit position", CmtPositionOffset, 8},
		{"commit first_batch_id", CmtFirstOffset, 16},
		{"commit last_batch_id", CmtLastOffset, 24},
		{"commit partition", CmtPartitionOffset, 32},
		{"commit producer_pid", CmtPidOffset, 36},
		{"commit data_ring_instance_id", CmtInstanceIDOffset, 40},
		{"commit produced_unix_ns", CmtProducedOffset, 48},
		{"commit reserved", CmtReservedOffset, 56},
		{"commit record length", CommitRecordLength, 64},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s offset = %d, docs/FORMAT.md says %d", c.name, c.got, c.want)
		}
	}
	// Fields written by different processes must not share a cache line.
	lines := map[int]string{}
	for _, f := range []struct {
		name string
		off  int
	}{{"static", MagicOffset}, {"producer", ProducerIdentityOffset}, {"consumer", ConsumerIdentityOffset}, {"tail", TailOffset}, {"head", HeadOffset}} {
		l := f.off / CacheLineLength
		if other, ok := lines[l]; ok {
			t.Errorf("%s and %s share cache line %d", f.name, other, l)
		}
		lines[l] = f.name
	}
	if Magic != 0x474E524D48535350 || string([]byte{0x50, 0x53, 0x53, 0x48, 0x4D, 0x52, 0x4E, 0x47}) != "PSSHMRNG" {
		t.Errorf("magic %#x does not spell PSSHMRNG little-endian", Magic)
	}
	if LayoutVersion != 0x00010000 {
		t.Errorf("layout version %#x, docs/FORMAT.md says 0x00010000", LayoutVersion)
	}
	if TypeArrow != 1 || TypePadding != 2 || TypeRaw != 3 || KindData != 1 || KindCommit != 2 || KindOutbound != 3 {
		t.Error("record types or ring kinds differ from docs/FORMAT.md")
	}
	if CommitTypeCommit != 1 || CommitTypeRelease != 2 || CommitTypeNack != 3 || CommitTypePadding != 4 || StateReleased != 1 || StateAborted != 2 {
		t.Error("commit types or state bits differ from docs/FORMAT.md")
	}
}
