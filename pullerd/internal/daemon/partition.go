package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.uber.org/zap"

	"github.com/pubsub-shm/pubsub-shm/ackd"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// partition is one virtual partition: one DATA ring, its single producer goroutine (run),
// and the ack table of the ring's current incarnation.
type partition struct {
	s    *subscription
	idx  int
	path string
	log  *zap.Logger
	// The streams' deliveries, in order. A queue and not a bounded channel: a stream must
	// never stop reading its gRPC stream because a ring is full, or the messages Pub/Sub
	// has already sent would wait in gRPC's buffers, unleased, until their ack deadline
	// passed. The queue is bounded by the flow-control limits (max outstanding messages and
	// bytes), which the server honours and waitForRoom enforces.
	qmu   sync.Mutex
	queue []delivery
	qwake chan struct{} // capacity 1: the queue is not empty
	// recreate asks run to nack the reader's uncommitted batches and recreate the ring.
	recreate chan struct{}

	mu         sync.RWMutex // guards the fields below against other goroutines; run writes them
	ring       *ringbuf.Ring
	table      *ackd.Table
	ringCtx    context.Context // ends when the ring is to be recreated (unblocks a full-ring wait)
	ringCancel context.CancelFunc

	// owned by run
	w  *ringbuf.Writer
	bt *arrowbatch.Batcher
	bd ackd.Builder // ack IDs of the open batch, in row order

	// owned by the monitor
	deadSince time.Time
	triggered uint64 // instance id a recreation was requested for
}

// delivery is a slice of one StreamingPull response handed to a partition, with the time
// it was received (the start of its lease).
type delivery struct {
	msgs  []*pb.ReceivedMessage
	at    time.Time
	lease *inflightLease // its lease until the messages are in a batch
}

// msgSize is the payload size of a message as held counts and batch limits count it.
func msgSize(m *pb.PubsubMessage) int64 {
	n := int64(len(m.GetMessageId()) + len(m.GetData()) + len(m.GetOrderingKey()))
	for k, v := range m.GetAttributes() {
		n += int64(len(k) + len(v))
	}
	return n
}

// newPartition creates partition idx's ring (replacing a stale one) in the set directory.
func newPartition(s *subscription, idx int) (*partition, error) {
	p := &partition{
		s:        s,
		idx:      idx,
		path:     filepath.Join(s.dir, DataRingName(idx)),
		log:      s.log.With(zap.Int("partition", idx)),
		qwake:    make(chan struct{}, 1),
		recreate: make(chan struct{}, 1),
	}
	if err := p.open(); err != nil {
		return nil, err
	}
	return p, nil
}

// open creates a new incarnation of the ring with a fresh writer, batcher and table. The
// caller holds p.mu or no other goroutine sees p yet.
func (p *partition) open() error {
	schema, err := arrowbatch.SchemaMessage()
	if err != nil {
		return err
	}
	r, err := createRing(p.path, ringbuf.CreateOptions{Kind: ringbuf.KindData, Capacity: p.s.d.cfg.RingCapacity,
		Partition: int32(p.idx), Schema: schema})
	if err != nil {
		return fmt.Errorf("partition %d: %w", p.idx, err)
	}
	w, err := ringbuf.NewWriter(r)
	if err != nil {
		r.Close()
		return fmt.Errorf("partition %d: %w", p.idx, err)
	}
	bt, err := arrowbatch.NewBatcher(w, p.s.d.cfg.Batch, ringbuf.NewBackoff(100, 10, 10*time.Microsecond, time.Millisecond))
	if err != nil {
		r.Close()
		return fmt.Errorf("partition %d: %w", p.idx, err)
	}
	p.ring, p.w, p.bt = r, w, bt
	p.table = ackd.NewTable(int32(p.idx), r.InstanceID(), &p.s.held)
	p.ringCtx, p.ringCancel = context.WithCancel(p.s.partCtx)
	p.log.Debug("data ring created", zap.String("path", p.path), zap.Uint64("instance_id", r.InstanceID()))
	return nil
}

// current returns the ring's current table.
func (p *partition) currentTable() *ackd.Table {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.table
}

// run is the single producer of the ring: it batches the messages the streams hand over,
// writes each batch into the ring (waiting while the ring is full, which stops it from
// taking more and so stops the streams), and files each batch's ack IDs in the table.
func (p *partition) run(ctx context.Context) {
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	armed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.recreate:
			p.doRecreate(ctx)
			armed = false
			linger.Stop()
		case <-p.qwake:
			dl, ok := p.dequeue()
			if !ok {
				continue
			}
			err := p.addAll(dl)
			p.s.inflight.remove(dl.lease) // in the table now, or in the open batch until the linger
			if err != nil {
				p.failed(ctx, err)
				armed = false
				linger.Stop()
				continue
			}
			if !armed && p.bt.Pending() > 0 {
				linger.Reset(time.Until(p.bt.Deadline()))
				armed = true
			}
		case now := <-linger.C:
			armed = false
			if p.bt.Due(now) {
				if err := p.flush(); err != nil {
					p.failed(ctx, err)
					continue
				}
			}
			if p.bt.Pending() > 0 {
				linger.Reset(time.Until(p.bt.Deadline()))
				armed = true
			}
		}
	}
}

// enqueue appends a delivery to the partition's queue and wakes run. It never blocks.
func (p *partition) enqueue(dl delivery) {
	p.qmu.Lock()
	p.queue = append(p.queue, dl)
	p.qmu.Unlock()
	select {
	case p.qwake <- struct{}{}:
	default:
	}
}

// dequeue takes the oldest delivery, waking run again if more remain.
func (p *partition) dequeue() (delivery, bool) {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	if len(p.queue) == 0 {
		return delivery{}, false
	}
	dl := p.queue[0]
	p.queue[0] = delivery{}
	p.queue = p.queue[1:]
	if len(p.queue) == 0 {
		p.queue = nil // let the backing array go
	} else {
		select {
		case p.qwake <- struct{}{}:
		default:
		}
	}
	return dl, true
}

// queued returns the number of deliveries waiting.
func (p *partition) queued() int {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	return len(p.queue)
}

// takeQueue removes and returns every waiting delivery (at shutdown).
func (p *partition) takeQueue() []delivery {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	q := p.queue
	p.queue = nil
	return q
}

// addAll adds messages to the open batch, writing it first when the message would push it
// past the policy's rows or bytes. If a write is cut short, the rest of msgs go into the
// builder unwritten (to be nacked).
func (p *partition) addAll(dl delivery) error {
	pol := &p.s.d.cfg.Batch
	msgs := dl.msgs
	for i, rm := range msgs {
		m := rm.GetMessage()
		size := msgSize(m)
		if size > pol.MaxBytes && p.tooLarge(rm) {
			continue
		}
		// The same rule as arrowbatch.Batcher.Add, applied here so that the batch is filed
		// in the ack table before it becomes visible in the ring.
		if n := p.bd.Len(); n > 0 && (n >= pol.MaxRows || p.bd.Bytes()+size > pol.MaxBytes) {
			if err := p.flush(); err != nil {
				for _, rest := range msgs[i:] {
					p.bd.Add(rest.GetAckId(), msgSize(rest.GetMessage()), dl.at)
				}
				return err
			}
		}
		ts := m.GetPublishTime()
		f, err := p.bt.Add(p.ringCtx, arrowbatch.Message{
			ID:              m.GetMessageId(),
			PublishTimeUs:   ts.GetSeconds()*1_000_000 + int64(ts.GetNanos())/1000,
			Data:            m.GetData(),
			Attributes:      m.GetAttributes(),
			OrderingKey:     m.GetOrderingKey(),
			DeliveryAttempt: rm.GetDeliveryAttempt(),
		})
		if err != nil || f.Rows > 0 {
			// Cannot happen: the batch was flushed above whenever the batcher would flush.
			p.log.Error("bug: the batcher flushed on its own; its ack ids are unknown", zap.Int("rows", f.Rows), zap.Error(err))
		}
		p.bd.Add(rm.GetAckId(), size, dl.at)
	}
	return nil
}

// tooLarge reports whether a message cannot fit in the ring even alone in a batch (a
// message near Pub/Sub's 10 MB limit with a small -ring-capacity). Writing it would fail
// every time, and failing used to recreate the ring and nack everything, redelivering the
// same message at once: the partition never moved again. Such a message is left out: it
// is in no batch and no lease, so Pub/Sub redelivers it when its ack deadline passes (or
// dead-letters it after the subscription's max delivery attempts), and the error names the
// fix.
func (p *partition) tooLarge(rm *pb.ReceivedMessage) bool {
	m := rm.GetMessage()
	var b arrowbatch.Batch
	b.Add(arrowbatch.Message{ID: m.GetMessageId(), Data: m.GetData(), Attributes: m.GetAttributes(), OrderingKey: m.GetOrderingKey()})
	meta, body := b.Sizes()
	need := ringbuf.RecordLength(ringbuf.TypeArrow, meta, body)
	if need <= p.ring.MaxRecordLength() {
		return false
	}
	size := msgSize(m)
	p.s.held.Add(-1, -size)
	p.log.Error("message too large for the ring: left unacked, Pub/Sub redelivers it after its ack deadline (or dead-letters it); raise -ring-capacity to at least twice its size",
		zap.String("message_id", m.GetMessageId()), zap.Int64("record_bytes", need),
		zap.Int64("max_record_length", p.ring.MaxRecordLength()), zap.Int64("ring_capacity", p.ring.Capacity()))
	return true
}

// flush files the open batch in the ack table under the id it is about to get, then
// writes it into the ring (waiting while the ring is full). Filing first means a reader
// can never commit a batch that the table does not know yet, and the lease loop keeps
// the batch leased while it waits for ring space. If the write fails, the batch stays
// in this incarnation's table, which is nacked when the ring is recreated or at shutdown.
func (p *partition) flush() error {
	if p.bd.Len() == 0 {
		return nil
	}
	id := p.w.NextBatchID()
	b := p.bd.Take(id)
	p.table.Put(b, b.Received.Add(p.s.d.cfg.AckDeadline))
	f, err := p.bt.Flush(p.ringCtx)
	if err != nil {
		return err
	}
	if f.BatchID != id || f.Rows != b.Len() {
		p.log.Error("bug: batch written under another id or row count", zap.Int64("want_id", id), zap.Int64("id", f.BatchID),
			zap.Int("want_rows", b.Len()), zap.Int("rows", f.Rows))
	}
	p.s.m.batches.Inc()
	p.s.m.rowsWritten.Add(float64(f.Rows))
	return nil
}

// failed handles a write that could not complete: shutdown, or a recreation request that
// cut a full-ring wait short.
func (p *partition) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // shutdown nacks the builder
	}
	select {
	case <-p.recreate:
		p.doRecreate(ctx)
	default:
		if p.ringCtx.Err() != nil {
			p.doRecreate(ctx)
			return
		}
		// Not a cancellation: the ring or batch is broken. Nack what is unwritten and start a
		// new incarnation so that the partition keeps working.
		p.log.Error("writing a batch failed; recreating the ring", zap.Error(err))
		p.doRecreate(ctx)
	}
}

// doRecreate nacks the reader's uncommitted batches and the open batch, and replaces the
// ring by a new incarnation (new instance id). A reader still holding the old ring sees
// its producer heartbeat stop, and a new instance id when it reopens the file.
func (p *partition) doRecreate(ctx context.Context) {
	pending := p.bd.Drain()
	p.mu.Lock()
	old, oldTable, oldCancel := p.ring, p.table, p.ringCancel
	err := p.open()
	if err != nil {
		p.ring, p.table, p.ringCancel = old, oldTable, oldCancel
		p.ringCtx, p.ringCancel = context.WithCancel(p.s.partCtx)
	}
	p.mu.Unlock()
	if err != nil {
		p.log.Error("cannot recreate the data ring; keeping the old one", zap.Error(err))
		if pending != nil {
			p.s.nack(ctx, []*ackd.Batch{pending}, "recreate failed")
			p.s.held.Add(-int64(pending.Len()), -pending.Bytes)
		}
		return
	}
	oldCancel()
	old.Close()
	batches := oldTable.TakeUnclaimed()
	if pending != nil {
		p.s.held.Add(-int64(pending.Len()), -pending.Bytes)
		batches = append(batches, pending)
	}
	n := 0
	for _, b := range batches {
		n += b.Len()
	}
	p.s.m.recreated.Inc()
	p.log.Warn("data ring recreated after its reader died; nacking what it had not committed so Pub/Sub redelivers it now",
		zap.Uint64("old_instance_id", oldTable.InstanceID()), zap.Uint64("new_instance_id", p.table.InstanceID()),
		zap.Int("batches", len(batches)), zap.Int("messages", n))
	p.s.nack(ctx, batches, "reader died")
}
