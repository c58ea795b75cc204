// Package ackd turns commit records into acknowledgements: it reads a COMMIT ring
// (docs/FORMAT.md section 4), resolves each record's batch-id range against the native ack
// tables that pullerd fills, and sends Acknowledge (COMMIT) or ModifyAckDeadline 0
// (RELEASE, NACK) to Pub/Sub in requests of at most 2500 ack IDs and 512 KiB, retrying
// transient failures with exponential back-off and jitter. It runs inside the pullerd
// process; it is a library and never exits the process.
//
// The ack table keeps no Go object per message: each batch holds all of its ack IDs back to
// back in one byte arena, with an offsets slice.
package ackd

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Held counts what a subscription holds: messages received from Pub/Sub and neither acked
// nor nacked yet, and their payload bytes. Streams add to it when they hand messages to a
// partition; tables subtract when batches are settled. It is safe for concurrent use.
type Held struct {
	Msgs  atomic.Int64
	Bytes atomic.Int64
}

// Add adds n messages of b bytes (negative to subtract).
func (h *Held) Add(n, b int64) {
	if h == nil {
		return
	}
	h.Msgs.Add(n)
	h.Bytes.Add(b)
}

// Batch is the ack IDs of one data-ring batch: all of them back to back in one arena, with
// the end offset of each. A Batch is immutable once it is in a Table, except for its lease
// and claim state, which the Table guards.
type Batch struct {
	ID       int64     // batch id in the data ring
	Bytes    int64     // payload bytes of its messages, as counted in Held
	Received time.Time // when its first message was received

	arena []byte
	ends  []uint32

	// guarded by the owning Table's mutex
	leaseUntil time.Time
	claimed    bool
}

// Len returns the number of messages (ack IDs) in the batch.
func (b *Batch) Len() int { return len(b.ends) }

// AckID returns the i-th ack ID. The string shares the batch's arena (no copy); it stays
// valid as long as the caller holds it (the arena is never modified).
func (b *Batch) AckID(i int) string {
	start := uint32(0)
	if i > 0 {
		start = b.ends[i-1]
	}
	n := b.ends[i] - start
	if n == 0 {
		return ""
	}
	return unsafe.String(&b.arena[start], int(n))
}

// AppendAckIDs appends the batch's ack IDs to dst (views into the arena) and returns it.
func (b *Batch) AppendAckIDs(dst []string) []string {
	for i := range b.ends {
		dst = append(dst, b.AckID(i))
	}
	return dst
}

// Builder collects the ack IDs of the batch a partition is filling. It is owned by one
// goroutine. The zero value is ready to use.
type Builder struct {
	arena []byte
	ends  []uint32
	bytes int64
	first time.Time
}

// Add appends one message's ack ID (copied into the arena), its payload size and when it
// was received (the batch's Received is its first message's).
func (bd *Builder) Add(ackID string, size int64, received time.Time) {
	if len(bd.ends) == 0 {
		bd.first = received
	}
	bd.arena = append(bd.arena, ackID...)
	bd.ends = append(bd.ends, uint32(len(bd.arena)))
	bd.bytes += size
}

// Len returns the number of ack IDs collected.
func (bd *Builder) Len() int { return len(bd.ends) }

// Bytes returns the payload bytes collected.
func (bd *Builder) Bytes() int64 { return bd.bytes }

// Take returns everything collected as batch id and empties the builder, keeping the
// capacity of its buffers for the next batch (the returned batch owns the old ones).
func (bd *Builder) Take(id int64) *Batch {
	b := &Batch{ID: id, Bytes: bd.bytes, Received: bd.first, arena: bd.arena, ends: bd.ends}
	bd.arena = make([]byte, 0, cap(bd.arena))
	bd.ends = make([]uint32, 0, cap(bd.ends))
	bd.bytes = 0
	return b
}

// Drain returns everything collected as one unnumbered batch (for a nack) and empties the
// builder; nil if it is empty.
func (bd *Builder) Drain() *Batch {
	if len(bd.ends) == 0 {
		return nil
	}
	return bd.Take(0)
}

// Table is the native ack table of one data ring incarnation: its batches keyed by batch
// id. It is safe for concurrent use: the partition writer adds, ackd claims and removes,
// the lease loop reads.
type Table struct {
	instanceID uint64
	partition  int32
	held       *Held

	mu      sync.Mutex
	batches map[int64]*Batch
	msgs    int64
	bytes   int64
}

// NewTable returns an empty table for the data ring incarnation instanceID of partition.
// Settled batches are subtracted from held (which may be nil).
func NewTable(partition int32, instanceID uint64, held *Held) *Table {
	return &Table{instanceID: instanceID, partition: partition, held: held, batches: map[int64]*Batch{}}
}

// InstanceID returns the ring_instance_id of the data ring the table belongs to.
func (t *Table) InstanceID() uint64 { return t.instanceID }

// Partition returns the virtual partition of the table.
func (t *Table) Partition() int32 { return t.partition }

// Put adds a batch leased until leaseUntil.
func (t *Table) Put(b *Batch, leaseUntil time.Time) {
	t.mu.Lock()
	b.leaseUntil = leaseUntil
	t.batches[b.ID] = b
	t.msgs += int64(b.Len())
	t.bytes += b.Bytes
	t.mu.Unlock()
}

// Stats returns the batches, messages and bytes in the table.
func (t *Table) Stats() (batches int, msgs, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.batches), t.msgs, t.bytes
}

// Claim marks the batches first..last (inclusive) as being settled, so that nothing else
// (a nack of everything, another commit) takes them, and returns them. missing counts the
// ids in the range that are not in the table or already claimed.
func (t *Table) Claim(first, last int64, dst []*Batch) (claimed []*Batch, missing int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// A range far wider than the table is resolved by scanning the table instead.
	if last-first+1 > int64(len(t.batches))*4+64 {
		found := int64(0)
		for id, b := range t.batches {
			if id >= first && id <= last && !b.claimed {
				b.claimed = true
				dst = append(dst, b)
				found++
			}
		}
		return dst, last - first + 1 - found
	}
	for id := first; id <= last; id++ {
		b, ok := t.batches[id]
		if !ok || b.claimed {
			missing++
			continue
		}
		b.claimed = true
		dst = append(dst, b)
	}
	return dst, missing
}

// Unclaim gives claimed batches back (their settlement was abandoned).
func (t *Table) Unclaim(bs []*Batch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range bs {
		b.claimed = false
	}
}

// Remove deletes settled batches and subtracts them from the held counts.
func (t *Table) Remove(bs []*Batch) {
	var n, bytes int64
	t.mu.Lock()
	for _, b := range bs {
		if cur, ok := t.batches[b.ID]; ok && cur == b {
			delete(t.batches, b.ID)
			t.msgs -= int64(b.Len())
			t.bytes -= b.Bytes
			n += int64(b.Len())
			bytes += b.Bytes
		}
	}
	t.mu.Unlock()
	t.held.Add(-n, -bytes)
}

// TakeUnclaimed removes and returns every batch that is not being settled, for a nack of
// everything (reader death, shutdown). Their counts are subtracted from held.
func (t *Table) TakeUnclaimed() []*Batch {
	var out []*Batch
	var n, bytes int64
	t.mu.Lock()
	for id, b := range t.batches {
		if b.claimed {
			continue
		}
		delete(t.batches, id)
		out = append(out, b)
		t.msgs -= int64(b.Len())
		t.bytes -= b.Bytes
		n += int64(b.Len())
		bytes += b.Bytes
	}
	t.mu.Unlock()
	t.held.Add(-n, -bytes)
	return out
}

// DueForLease returns the batches (claimed or not) whose lease ends before now+margin and
// moves their lease to extendTo: the caller sends ModifyAckDeadline for them.
func (t *Table) DueForLease(now time.Time, margin time.Duration, extendTo time.Time, dst []*Batch) []*Batch {
	limit := now.Add(margin)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.batches {
		if b.leaseUntil.Before(limit) {
			b.leaseUntil = extendTo
			dst = append(dst, b)
		}
	}
	return dst
}
