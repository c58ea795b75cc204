package ringbuf

// This file is the Go descriptor of the ring layout in docs/FORMAT.md. Every offset is
// computed from named sizes; descriptor_test.go checks each one against the numbers that
// docs/FORMAT.md prints, and the Java twin (RingDescriptor.java) is checked against the
// same numbers.
//
// File header (little-endian), see docs/FORMAT.md section 2:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------------------------------------------------------+
//	|                      magic "PSSHMRNG" (u64)                   |  0
//	+---------------------------------------------------------------+
//	|                     layout_version (u32)                      |  8
//	|                        ring_kind (u32)                        | 12
//	|                      header_length (u32)                      | 16
//	|                     record_alignment (u32)                    | 20
//	|                         capacity (u64)                        | 24
//	|                       file_length (u64)                       | 32
//	|                     ring_instance_id (u64)                    | 40
//	|                      created_unix_ns (i64)                    | 48
//	|                        partition (i32)                        | 56
//	|                    max_record_length (u32)                    | 60
//	+===============================================================+
//	|  producer_pid, producer_start_ticks, producer_heartbeat_ns,   | 64
//	|  producer_closed (i64 each)                                   |
//	+===============================================================+
//	|  consumer_pid, consumer_start_ticks, consumer_heartbeat_ns,   | 128
//	|  consumer_closed (i64 each)                                   |
//	+===============================================================+
//	|                     tail_position (i64)                       | 192
//	+===============================================================+
//	|                     head_position (i64)                       | 256
//	+===============================================================+
//	|            schema_length (u32), schema_offset (u32)           | 512
//	+===============================================================+
//	|            schema bytes (Arrow IPC Schema message)            | 1024
//	+---------------------------------------------------------------+

const (
	sizeOfInt32 = 4
	sizeOfInt64 = 8

	// CacheLineLength separates fields written by different processes.
	CacheLineLength = 64
	// RecordAlignment is the alignment of every record and of every Arrow body buffer.
	RecordAlignment = 64
	// PageSize is the unit of header_length.
	PageSize = 4096

	// Magic is "PSSHMRNG" read as a little-endian u64.
	Magic uint64 = 0x474E524D48535350
	// VersionMajor and VersionMinor are the layout version this package writes.
	VersionMajor = 1
	VersionMinor = 0
	// LayoutVersion is the encoded layout_version field: major<<16 | minor.
	LayoutVersion uint32 = VersionMajor<<16 | VersionMinor

	// MinCapacity and MaxCapacity bound a ring area (both powers of two).
	MinCapacity = 4096
	MaxCapacity = 1 << 30
	// DefaultHeaderLength is the header size this package creates.
	DefaultHeaderLength = PageSize
)

// Header field offsets. The static block: fields the creator writes once.
const (
	MagicOffset           = 0
	VersionOffset         = MagicOffset + sizeOfInt64
	KindOffset            = VersionOffset + sizeOfInt32
	HeaderLengthOffset    = KindOffset + sizeOfInt32
	AlignmentOffset       = HeaderLengthOffset + sizeOfInt32
	CapacityOffset        = AlignmentOffset + sizeOfInt32
	FileLengthOffset      = CapacityOffset + sizeOfInt64
	InstanceIDOffset      = FileLengthOffset + sizeOfInt64
	CreatedOffset         = InstanceIDOffset + sizeOfInt64
	PartitionOffset       = CreatedOffset + sizeOfInt64
	MaxRecordLengthOffset = PartitionOffset + sizeOfInt32
	staticBlockEnd        = MaxRecordLengthOffset + sizeOfInt32
)

// Identity blocks: one cache line each for the producer and the consumer.
const (
	idPidOffset       = 0
	idStartOffset     = idPidOffset + sizeOfInt64
	idHeartbeatOffset = idStartOffset + sizeOfInt64
	idClosedOffset    = idHeartbeatOffset + sizeOfInt64

	ProducerIdentityOffset  = CacheLineLength * 1
	ProducerPidOffset       = ProducerIdentityOffset + idPidOffset
	ProducerStartOffset     = ProducerIdentityOffset + idStartOffset
	ProducerHeartbeatOffset = ProducerIdentityOffset + idHeartbeatOffset
	ProducerClosedOffset    = ProducerIdentityOffset + idClosedOffset

	ConsumerIdentityOffset  = CacheLineLength * 2
	ConsumerPidOffset       = ConsumerIdentityOffset + idPidOffset
	ConsumerStartOffset     = ConsumerIdentityOffset + idStartOffset
	ConsumerHeartbeatOffset = ConsumerIdentityOffset + idHeartbeatOffset
	ConsumerClosedOffset    = ConsumerIdentityOffset + idClosedOffset

	// TailOffset and HeadOffset each own a cache line: the producers write one, the
	// consumers the other.
	TailOffset = CacheLineLength * 3
	HeadOffset = CacheLineLength * 4

	SchemaLengthOffset = CacheLineLength * 8
	SchemaOffsetOffset = SchemaLengthOffset + sizeOfInt32
	// SchemaStart is where the schema bytes begin (the value of schema_offset).
	SchemaStart = CacheLineLength * 16
)

// Kind is the ring_kind header field.
type Kind uint32

// Ring kinds.
const (
	KindData     Kind = 1 // Go -> JVM, Arrow batches
	KindCommit   Kind = 2 // JVM -> Go, fixed 64-byte commit records
	KindOutbound Kind = 3 // JVM -> Go, Arrow batches to publish (DATA layout)
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "DATA"
	case KindCommit:
		return "COMMIT"
	case KindOutbound:
		return "OUTBOUND"
	}
	return "UNKNOWN"
}

// Data record header (docs/FORMAT.md section 3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------------------------------------------------------+
//	|                          length (i32)                         |  0
//	|                           type (i32)                          |  4
//	|                         batch_id (i64)                        |  8
//	|                        row_count (i32)                        | 16
//	|                          state (i32)                          | 20
//	|                       meta_offset (u32)                       | 24
//	|                       meta_length (u32)                       | 28
//	|                       body_offset (u32)                       | 32
//	|                        reserved (u32)                         | 36
//	|                       body_length (i64)                       | 40
//	|                    produced_unix_ns (i64)                     | 48
//	|                        position (i64)                         | 56
//	+---------------------------------------------------------------+
//	|  Arrow IPC message prefix (0xFFFFFFFF, i32 size, flatbuffer)  | 64
//	|  zero padding to 64                                           |
//	|  Arrow body                                                   | body_offset
//	+---------------------------------------------------------------+
const (
	RecLengthOffset     = 0
	RecTypeOffset       = RecLengthOffset + sizeOfInt32
	RecBatchIDOffset    = RecTypeOffset + sizeOfInt32
	RecRowCountOffset   = RecBatchIDOffset + sizeOfInt64
	RecStateOffset      = RecRowCountOffset + sizeOfInt32
	RecMetaOffsetOffset = RecStateOffset + sizeOfInt32
	RecMetaLengthOffset = RecMetaOffsetOffset + sizeOfInt32
	RecBodyOffsetOffset = RecMetaLengthOffset + sizeOfInt32
	RecReservedOffset   = RecBodyOffsetOffset + sizeOfInt32
	RecBodyLengthOffset = RecReservedOffset + sizeOfInt32
	RecProducedOffset   = RecBodyLengthOffset + sizeOfInt64
	RecPositionOffset   = RecProducedOffset + sizeOfInt64
	// RecordHeaderLength is the size of a data record header; payloads start here.
	RecordHeaderLength = RecPositionOffset + sizeOfInt64
)

// RecordType is the type field of a data record.
type RecordType int32

// Data record types.
const (
	TypeArrow   RecordType = 1 // one Arrow IPC RecordBatch message
	TypePadding RecordType = 2 // fills the gap up to the end of the ring area
	TypeRaw     RecordType = 3 // opaque bytes at offset 64
)

// State bits of a data record, set by consumers.
const (
	StateReleased int32 = 1 << 0
	StateAborted  int32 = 1 << 1
)

// Commit record (docs/FORMAT.md section 4):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------------------------------------------------------+
//	|                          length (i32)                         |  0
//	|                           type (i32)                          |  4
//	|                         position (i64)                        |  8
//	|                      first_batch_id (i64)                     | 16
//	|                      last_batch_id (i64)                      | 24
//	|                        partition (i32)                        | 32
//	|                      producer_pid (i32)                       | 36
//	|                 data_ring_instance_id (u64)                   | 40
//	|                    produced_unix_ns (i64)                     | 48
//	|                       reserved (u64)                          | 56
//	+---------------------------------------------------------------+
const (
	CmtLengthOffset     = 0
	CmtTypeOffset       = CmtLengthOffset + sizeOfInt32
	CmtPositionOffset   = CmtTypeOffset + sizeOfInt32
	CmtFirstOffset      = CmtPositionOffset + sizeOfInt64
	CmtLastOffset       = CmtFirstOffset + sizeOfInt64
	CmtPartitionOffset  = CmtLastOffset + sizeOfInt64
	CmtPidOffset        = CmtPartitionOffset + sizeOfInt32
	CmtInstanceIDOffset = CmtPidOffset + sizeOfInt32
	CmtProducedOffset   = CmtInstanceIDOffset + sizeOfInt64
	CmtReservedOffset   = CmtProducedOffset + sizeOfInt64
	// CommitRecordLength is the fixed size of a commit record.
	CommitRecordLength = CmtReservedOffset + sizeOfInt64
)

// CommitType is the type field of a commit record.
type CommitType int32

// Commit record types.
const (
	CommitTypeCommit  CommitType = 1 // acknowledge the batches
	CommitTypeRelease CommitType = 2 // given back unprocessed: ModifyAckDeadline(0)
	CommitTypeNack    CommitType = 3 // processing failed: ModifyAckDeadline(0)
	CommitTypePadding CommitType = 4 // slot abandoned by a dead producer
)

func (t CommitType) String() string {
	switch t {
	case CommitTypeCommit:
		return "COMMIT"
	case CommitTypeRelease:
		return "RELEASE"
	case CommitTypeNack:
		return "NACK"
	case CommitTypePadding:
		return "PADDING"
	}
	return "UNKNOWN"
}

// Align rounds n up to a multiple of a (a power of two).
func Align(n, a int64) int64 { return (n + a - 1) &^ (a - 1) }
