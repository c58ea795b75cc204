package ackd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// Lookup returns the current ack table of a virtual partition, or nil if the partition
// does not exist.
type Lookup func(partition int32) *Table

// Config configures an Ackd.
type Config struct {
	// Ring is the COMMIT ring; the Ackd becomes its (single) consumer.
	Ring *ringbuf.Ring
	// Tables resolves a commit record's partition to its current ack table.
	Tables Lookup
	// Sender sends the acks and nacks.
	Sender *Sender
	// Log receives warnings about unknown and stale commits; zap.NewNop if nil.
	Log *zap.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// Workers is the number of requests in flight at once; 4 if zero.
	Workers int
	// Linger is how long a settlement may wait for more commit records before it is sent
	// with fewer than MaxAckIDsPerRequest ack IDs (fewer, larger requests); 5 ms if zero,
	// negative for none. Pub/Sub's own clients batch acks for up to 100 ms.
	Linger time.Duration
	// UnblockTimeout is how long a claimed, unpublished commit slot may stall the ring
	// before it is skipped (ringbuf.CommitReader.UnblockTimeout); 10 s if zero.
	UnblockTimeout time.Duration
}

// Ackd consumes one COMMIT ring. Create it with New, run it with Run, stop it with Stop.
type Ackd struct {
	cfg  Config
	rd   *ringbuf.CommitReader
	log  *zap.Logger
	m    *Metrics
	stop chan struct{}
	once sync.Once
}

// New attaches to cfg.Ring as its consumer.
func New(cfg Config) (*Ackd, error) {
	if cfg.Ring == nil || cfg.Tables == nil || cfg.Sender == nil {
		return nil, errors.New("ackd: Config needs Ring, Tables and Sender")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Linger == 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	rd, err := ringbuf.NewCommitReader(cfg.Ring)
	if err != nil {
		return nil, fmt.Errorf("ackd: attach to commit ring: %w", err)
	}
	if cfg.UnblockTimeout > 0 {
		rd.UnblockTimeout = cfg.UnblockTimeout
	}
	return &Ackd{cfg: cfg, rd: rd, log: cfg.Log, m: cfg.Metrics, stop: make(chan struct{})}, nil
}

// Stop asks Run to finish: it processes the records already published, waits for the
// requests in flight and returns. Stop may be called more than once.
func (a *Ackd) Stop() { a.once.Do(func() { close(a.stop) }) }

// entry is one claimed batch and where it came from.
type entry struct {
	t          *Table
	b          *Batch
	producedNs int64
}

// job is the batches of consecutive commit records of one kind, settled together.
type job struct {
	ack     bool // COMMIT; otherwise RELEASE/NACK (ModifyAckDeadline 0)
	entries []entry
	ids     int
	started time.Time
}

// Run consumes the commit ring until Stop is called or ctx ends, heart-beating as its
// consumer. ctx bounds the RPCs: when it ends, batches whose settlement was cut short go
// back to their tables unsettled (a later nack of everything covers them). Run returns
// nil after Stop, ctx's error otherwise.
func (a *Ackd) Run(ctx context.Context) error {
	jobs := make(chan *job, a.cfg.Workers)
	var wg sync.WaitGroup
	for range a.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				a.settle(ctx, j)
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
		a.rd.Close()
	}()

	idle := ringbuf.NewBackoff(50, 10, 10*time.Microsecond, time.Millisecond)
	lastBeat := time.Time{}
	var cur *job
	flush := func() error {
		if cur == nil || len(cur.entries) == 0 {
			cur = nil // records that named nothing settleable
			return nil
		}
		select {
		case jobs <- cur:
			cur = nil
			return nil
		case <-ctx.Done():
			a.abandon(cur)
			cur = nil
			return ctx.Err()
		}
	}
	stopping := false
	for {
		if now := time.Now(); now.Sub(lastBeat) >= 100*time.Millisecond {
			a.rd.Heartbeat()
			lastBeat = now
		}
		rec, ok, err := a.rd.Poll()
		if err != nil {
			a.m.add(func(m *Metrics) prometheus.Counter { return m.BadRecords }, 1)
			a.log.Error("ackd: skipped a bad commit record", zap.Error(err))
			continue
		}
		if ok {
			idle.Reset()
			a.m.add(func(m *Metrics) prometheus.Counter { return m.CommitRecords }, 1)
			ack := rec.Type == ringbuf.CommitTypeCommit
			if cur != nil && cur.ack != ack {
				if err := flush(); err != nil {
					return err
				}
			}
			if cur == nil {
				cur = &job{ack: ack, started: time.Now()}
			}
			a.resolve(rec, cur)
			if cur.ids >= MaxAckIDsPerRequest {
				if err := flush(); err != nil {
					return err
				}
			}
			continue
		}
		if cur != nil && (stopping || time.Since(cur.started) >= a.cfg.Linger) {
			if err := flush(); err != nil {
				return err
			}
		}
		if stopping && cur == nil {
			return nil
		}
		select {
		case <-a.stop:
			stopping = true // one more pass picks up what was published before Stop
			continue
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		idle.Idle(0)
	}
}

// resolve claims the batches a record names and adds them to j.
func (a *Ackd) resolve(rec ringbuf.CommitRecord, j *job) {
	t := a.cfg.Tables(rec.Partition)
	if t == nil {
		a.m.add(func(m *Metrics) prometheus.Counter { return m.UnknownBatches }, float64(rec.LastBatchID-rec.FirstBatchID+1))
		a.log.Warn("ackd: commit record for a partition this ring set does not have; ignored",
			zap.Int32("partition", rec.Partition), zap.Int64("first_batch_id", rec.FirstBatchID),
			zap.Int64("last_batch_id", rec.LastBatchID), zap.Int32("producer_pid", rec.ProducerPid))
		return
	}
	if rec.DataInstanceID != t.InstanceID() {
		a.m.add(func(m *Metrics) prometheus.Counter { return m.StaleCommits }, 1)
		a.log.Warn("ackd: commit record for a data ring incarnation that was recreated; ignored (its messages were nacked and are redelivered)",
			zap.Int32("partition", rec.Partition), zap.Uint64("record_instance_id", rec.DataInstanceID),
			zap.Uint64("current_instance_id", t.InstanceID()), zap.Stringer("type", rec.Type),
			zap.Int64("first_batch_id", rec.FirstBatchID), zap.Int64("last_batch_id", rec.LastBatchID))
		return
	}
	var claimed []*Batch
	claimed, missing := t.Claim(rec.FirstBatchID, rec.LastBatchID, nil)
	if missing > 0 {
		a.m.add(func(m *Metrics) prometheus.Counter { return m.UnknownBatches }, float64(missing))
		a.log.Warn("ackd: commit record names batch ids that are not in the ack table (never written, already settled, or committed twice); those ids are ignored",
			zap.Int32("partition", rec.Partition), zap.Stringer("type", rec.Type),
			zap.Int64("first_batch_id", rec.FirstBatchID), zap.Int64("last_batch_id", rec.LastBatchID),
			zap.Int64("unknown", missing), zap.Int32("producer_pid", rec.ProducerPid))
	}
	for _, b := range claimed {
		j.entries = append(j.entries, entry{t: t, b: b, producedNs: rec.ProducedNs})
		j.ids += b.Len()
	}
}

// settle sends the acks or nacks of a job and removes its batches from their tables.
func (a *Ackd) settle(ctx context.Context, j *job) {
	ids := make([]string, 0, j.ids)
	for _, e := range j.entries {
		ids = e.b.AppendAckIDs(ids)
	}
	var res Result
	var err error
	if j.ack {
		res, err = a.cfg.Sender.Ack(ctx, ids)
	} else {
		res, err = a.cfg.Sender.Modack(ctx, ids, 0)
	}
	if err != nil {
		a.log.Warn("ackd: settlement cut short; batches stay in their tables", zap.Bool("ack", j.ack),
			zap.Int("ack_ids", len(ids)), zap.Error(err))
		a.abandon(j)
		return
	}
	if j.ack {
		a.m.add(func(m *Metrics) prometheus.Counter { return m.AcksSent }, float64(res.Succeeded))
		if a.m != nil {
			now := time.Now().UnixNano()
			for _, e := range j.entries {
				a.m.AckLatency.Observe(float64(now-e.producedNs) / 1e9)
			}
		}
	} else {
		a.m.add(func(m *Metrics) prometheus.Counter { return m.NacksSent }, float64(res.Succeeded))
	}
	for _, e := range j.entries {
		e.t.Remove([]*Batch{e.b})
	}
}

// abandon gives a job's batches back to their tables.
func (a *Ackd) abandon(j *job) {
	for _, e := range j.entries {
		e.t.Unclaim([]*Batch{e.b})
	}
}
