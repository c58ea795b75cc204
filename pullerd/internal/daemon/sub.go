package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.uber.org/zap"

	"github.com/pubsub-shm/pubsub-shm/ackd"
	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

// subscription is one attached subscription and its ring set.
type subscription struct {
	d        *Daemon
	sub      Sub
	dir      string
	log      *zap.Logger
	m        *subMetrics
	parts    []*partition
	commit   *ringbuf.Ring
	ackd     *ackd.Ackd
	sender   *ackd.Sender
	held     ackd.Held
	inflight inflight // leases of received messages not in a table yet
	ordering atomic.Bool
	rr       atomic.Uint64

	// streamsMu guards streams, nextStream and streamsDone. streams are the running
	// streams (a resize retires the last ones or appends new ones); retired streams
	// still draining are no longer in it but still counted in streamWG. nstreams is
	// len(streams), for status and the flow-control split of streams opened from now on.
	streamsMu   sync.Mutex
	streams     []*stream
	nextStream  int  // id of the next stream started (ids are never reused)
	streamsDone bool // stop has begun: no stream starts any more
	nstreams    atomic.Int64

	// streamCtx ends the streams, partCtx the partitions, loopCtx the lease loop and
	// monitor, ackCtx ackd's RPCs. They end in that order at shutdown.
	streamCtx, partCtx, loopCtx, ackCtx     context.Context
	streamStop, partStop, loopStop, ackStop context.CancelFunc
	streamWG, partWG, loopWG                sync.WaitGroup
	ackDone                                 chan struct{}
	orphansMu                               sync.Mutex
	orphans                                 []*pb.ReceivedMessage
	ctl                                     *listener
	stopOnce                                sync.Once
}

// startSub creates sub's ring set (taking over a stale one) and starts its goroutines,
// with the number of streams that an attach request asked for (0: pullerd's own number;
// see Config.streamsWanted).
func (d *Daemon) startSub(sub Sub, streams int) (s *subscription, err error) {
	if sub.Partitions == 0 {
		sub.Partitions = d.cfg.Partitions
	}
	s = &subscription{
		d:       d,
		sub:     sub,
		dir:     filepath.Join(d.cfg.Dir, sub.SetName()),
		log:     d.log.With(zap.String("subscription", sub.FullName())),
		ackDone: make(chan struct{}),
	}
	if _, err := prepareSet(s.dir, sub.Partitions, s.log); err != nil {
		return nil, err
	}
	s.m = newSubMetrics(d.reg, sub.FullName())
	s.streamCtx, s.streamStop = context.WithCancel(context.Background())
	s.partCtx, s.partStop = context.WithCancel(context.Background())
	s.loopCtx, s.loopStop = context.WithCancel(context.Background())
	s.ackCtx, s.ackStop = context.WithCancel(context.Background())
	ss := s // `return nil, err` clears the named result s before this cleanup runs
	defer func() {
		if err != nil {
			ss.streamStop()
			ss.partStop()
			ss.loopStop()
			ss.ackStop()
			if ss.commit != nil {
				ss.commit.Close()
			}
			for _, p := range ss.parts {
				p.ring.Close()
			}
			ss.removeFiles()
			ss.m.unregister()
		}
	}()
	s.sender = &ackd.Sender{Client: d.client, Subscription: sub.FullName(), Backoff: ackd.DefaultBackoff,
		Log: s.log, Metrics: s.m.ackd}
	s.commit, err = createRing(filepath.Join(s.dir, CommitRingName), ringbuf.CreateOptions{Kind: ringbuf.KindCommit, Capacity: d.cfg.CommitRingCapacity})
	if err != nil {
		return nil, err
	}
	for i := range sub.Partitions {
		p, err := newPartition(s, i)
		if err != nil {
			return nil, err
		}
		s.parts = append(s.parts, p)
	}
	s.ackd, err = ackd.New(ackd.Config{Ring: s.commit, Sender: s.sender, Log: s.log, Metrics: s.m.ackd,
		Tables: func(p int32) *ackd.Table {
			if p < 0 || int(p) >= len(s.parts) {
				return nil
			}
			return s.parts[p].currentTable()
		}})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(s.dir, MetricsAddrName), []byte(d.metricsAddr+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write metrics address file: %w", err)
	}
	s.ctl, err = d.ctl.listen(filepath.Join(s.dir, ControlSocketName), &s.sub)
	if err != nil {
		return nil, err
	}

	go func() {
		defer close(s.ackDone)
		if err := s.ackd.Run(s.ackCtx); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("ackd stopped", zap.Error(err))
		}
	}()
	for _, p := range s.parts {
		s.partWG.Add(1)
		go func() {
			defer s.partWG.Done()
			p.run(s.partCtx)
		}()
	}
	s.loopWG.Add(2)
	go func() { defer s.loopWG.Done(); s.monitor(s.loopCtx) }()
	go func() { defer s.loopWG.Done(); s.leases(s.loopCtx) }()
	n := d.cfg.streamsWanted(len(s.parts), streams)
	s.streamsMu.Lock()
	s.startStreamsLocked(n)
	s.streamsMu.Unlock()
	s.log.Info("subscription attached", zap.String("ring_set", s.dir), zap.Int("partitions", len(s.parts)),
		zap.Int("streams", n), zap.Int("streams_requested", streams), zap.Int("streams_max", d.cfg.streamsFor(len(s.parts))),
		zap.Int64("ring_capacity", d.cfg.RingCapacity))
	return s, nil
}

// startStreamsLocked starts n more streams, each after its own random stagger. Callers
// hold streamsMu, and stop has not begun.
func (s *subscription) startStreamsLocked(n int) {
	for range n {
		ctx, cancel := context.WithCancel(s.streamCtx)
		st := &stream{s: s, id: s.nextStream, log: s.log.With(zap.Int("stream", s.nextStream)),
			cancel: cancel, retired: make(chan struct{})}
		s.nextStream++
		s.streams = append(s.streams, st)
		s.streamWG.Add(1)
		go func() {
			defer s.streamWG.Done()
			defer cancel()
			st.run(ctx)
		}()
	}
	s.nstreams.Store(int64(len(s.streams)))
}

// resizeStreams sets the number of running streams to what an attach request asked for
// (requested; 0: pullerd's own number; see Config.streamsWanted). New streams start as at
// startup, after a random stagger; streams beyond the new count are retired: each
// half-closes its StreamingPull and hands what the server still sends to the partitions
// as usual (leased, nothing dropped) until the server ends the stream. The same number is
// a no-op; after stop has begun, resizeStreams does nothing.
func (s *subscription) resizeStreams(requested int) {
	n := s.d.cfg.streamsWanted(len(s.parts), requested)
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	old := len(s.streams)
	if s.streamsDone || n == old {
		return
	}
	if n < old {
		for _, st := range s.streams[n:] {
			st.retire()
		}
		clear(s.streams[n:])
		s.streams = s.streams[:n]
		s.nstreams.Store(int64(n))
	} else {
		s.startStreamsLocked(n - old)
	}
	s.log.Info("streams resized", zap.Int("from", old), zap.Int("to", n), zap.Int("requested", requested),
		zap.Int("max", s.d.cfg.streamsFor(len(s.parts))))
}

// monitor stamps the producer heartbeat of every DATA ring, watches the readers'
// heartbeats, asks a partition to recreate its ring when its reader has been dead for the
// grace period, and updates the gauges.
func (s *subscription) monitor(ctx context.Context) {
	cfg := &s.d.cfg
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		for _, p := range s.parts {
			p.mu.RLock()
			r := p.ring
			r.Heartbeat(ringbuf.Producer)
			s.m.fill(p.idx, float64(r.Used())/float64(r.Capacity()))
			id := r.Peer(ringbuf.Consumer)
			alive, why := true, ""
			if id.Pid != 0 && !id.Closed {
				alive, why = r.PeerAlive(ringbuf.Consumer, cfg.ReaderTimeout)
			}
			inst, cancel := r.InstanceID(), p.ringCancel
			p.mu.RUnlock()
			switch {
			case alive:
				p.deadSince = time.Time{}
			case p.triggered == inst:
			case p.deadSince.IsZero():
				p.deadSince = now
				p.log.Warn("reader of the data ring looks dead; nacking its uncommitted batches after the grace period",
					zap.String("why", why), zap.Duration("grace", cfg.ReaderGrace), zap.Int64("reader_pid", id.Pid))
			case now.Sub(p.deadSince) >= cfg.ReaderGrace:
				p.triggered = inst
				p.deadSince = time.Time{}
				select {
				case p.recreate <- struct{}{}:
				default:
				}
				cancel() // unblocks a wait for space in the full ring
			}
		}
		s.m.heldMsgs.Set(float64(s.held.Msgs.Load()))
		s.m.heldBytes.Set(float64(s.held.Bytes.Load()))
		s.m.unacked.Set(float64(s.held.Msgs.Load()))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// leases extends the lease of every batch not yet acked before it ends: when less than
// a third of the ack deadline (at least min(5 s, half of it)) is left, it sends
// ModifyAckDeadline(ack deadline) for the batch.
func (s *subscription) leases(ctx context.Context) {
	deadline := s.d.cfg.AckDeadline
	every := min(time.Second, deadline/10)
	margin := max(deadline/3, min(5*time.Second, deadline/2))
	secs := int32(deadline / time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var due []*ackd.Batch
	var ids []string
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		due, ids = due[:0], ids[:0]
		for _, p := range s.parts {
			due = p.currentTable().DueForLease(now, margin, now.Add(deadline), due)
		}
		ids = s.inflight.due(now, margin, now.Add(deadline), ids)
		if len(due) == 0 && len(ids) == 0 {
			continue
		}
		for _, b := range due {
			ids = b.AppendAckIDs(ids)
		}
		res, err := s.sender.Modack(ctx, ids, secs)
		s.m.leaseModacks.Add(float64(res.Succeeded))
		if err != nil && ctx.Err() == nil {
			s.log.Warn("lease extension incomplete", zap.Int("ack_ids", len(ids)), zap.Error(err))
		}
		clear(due)
	}
}

// nack sends ModifyAckDeadline 0 for batches already removed from their tables.
func (s *subscription) nack(ctx context.Context, batches []*ackd.Batch, why string) {
	var ids []string
	for _, b := range batches {
		ids = b.AppendAckIDs(ids)
	}
	if len(ids) == 0 {
		return
	}
	res, err := s.sender.Modack(ctx, ids, 0)
	s.m.ackd.NacksSent.Add(float64(res.Succeeded))
	if err != nil {
		s.log.Warn("nack incomplete; Pub/Sub redelivers the rest when their lease ends",
			zap.String("why", why), zap.Int("ack_ids", len(ids)), zap.Int("nacked", res.Succeeded), zap.Error(err))
	}
}

// orphan records messages a stream received but could not hand to a partition before
// shutdown; shutdown nacks them.
func (s *subscription) orphan(msgs []*pb.ReceivedMessage) {
	s.orphansMu.Lock()
	s.orphans = append(s.orphans, msgs...)
	s.orphansMu.Unlock()
}

// stop shuts the subscription down: streams first, then partitions; ackd acks what was
// committed (within the shutdown timeout); everything else is nacked so Pub/Sub
// redelivers it at once; then the ring set is removed.
func (s *subscription) stop() {
	s.stopOnce.Do(func() {
		timeout := s.d.cfg.ShutdownTimeout
		s.streamsMu.Lock()
		s.streamsDone = true // no stream starts from now on: streamWG only goes down
		s.streamsMu.Unlock()
		s.streamStop() // every stream's context, the retired ones' too
		s.streamWG.Wait()
		s.partStop()
		s.partWG.Wait()
		for _, p := range s.parts {
			p.w.Close() // producer_closed = 1: end of stream for a reader still attached
			// Received, never batched: nacked below.
			for _, dl := range p.takeQueue() {
				s.inflight.remove(dl.lease)
				s.orphan(dl.msgs)
			}
		}
		s.ackd.Stop()
		t := time.NewTimer(timeout)
		select {
		case <-s.ackDone:
		case <-t.C:
			s.log.Warn("ackd did not finish within the shutdown timeout; nacking what it still held", zap.Duration("timeout", timeout))
			s.ackStop()
			<-s.ackDone
		}
		t.Stop()
		s.ackStop()

		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var batches []*ackd.Batch
		for _, p := range s.parts {
			if b := p.bd.Drain(); b != nil {
				s.held.Add(-int64(b.Len()), -b.Bytes)
				batches = append(batches, b)
			}
			batches = append(batches, p.table.TakeUnclaimed()...)
		}
		var orphan ackd.Builder
		for _, rm := range s.orphans {
			orphan.Add(rm.GetAckId(), msgSize(rm.GetMessage()), time.Now())
		}
		if b := orphan.Drain(); b != nil {
			s.held.Add(-int64(b.Len()), -b.Bytes)
			batches = append(batches, b)
		}
		n := 0
		for _, b := range batches {
			n += b.Len()
		}
		s.nack(ctx, batches, "shutdown")
		s.loopStop()
		s.loopWG.Wait()
		s.ctl.close()
		s.removeFiles()
		for _, p := range s.parts {
			p.ring.Close()
		}
		s.commit.Close()
		s.m.unregister()
		s.log.Info("subscription detached; uncommitted messages nacked", zap.Int("nacked", n))
	})
}

// removeFiles unlinks the ring set's files and directory.
func (s *subscription) removeFiles() {
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		name := e.Name()
		if name == CommitRingName || name == ControlSocketName || name == MetricsAddrName || dataRingRE.MatchString(name) {
			_ = os.Remove(filepath.Join(s.dir, name))
		}
	}
	if err := os.Remove(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("ring set directory not removed", zap.String("dir", s.dir), zap.Error(err))
	}
}

// RingStatus describes one ring file in a status answer.
type RingStatus struct {
	Partition int32  `json:"partition"`
	File      string `json:"file"`
	// InstanceID is ring_instance_id as an unsigned decimal string (it does not fit a
	// JSON number exactly).
	InstanceID       string  `json:"instance_id"`
	Fill             float64 `json:"fill"`
	ConsumerAttached bool    `json:"consumer_attached"`
	ConsumerAlive    bool    `json:"consumer_alive"`
	Batches          int     `json:"batches_uncommitted,omitempty"`
	Messages         int64   `json:"messages_uncommitted,omitempty"`
}

// RingSetStatus describes one attached subscription in a control answer. Streams is the
// number of StreamingPull streams the subscription runs now (retired streams still
// draining after a resize are not counted).
type RingSetStatus struct {
	Project            string       `json:"project"`
	Subscription       string       `json:"subscription"`
	Dir                string       `json:"dir"`
	Streams            int          `json:"streams"`
	CommitRing         RingStatus   `json:"commit_ring"`
	Partitions         []RingStatus `json:"partitions"`
	NumUnackedMessages int64        `json:"num_unacked_messages"`
	HeldMessages       int64        `json:"held_messages"`
	HeldBytes          int64        `json:"held_bytes"`
	MetricsAddr        string       `json:"metrics_addr"`
}

func ringStatus(r *ringbuf.Ring, timeout time.Duration) RingStatus {
	id := r.Peer(ringbuf.Consumer)
	alive, _ := r.PeerAlive(ringbuf.Consumer, timeout)
	return RingStatus{Partition: r.Partition(), File: r.Path(), InstanceID: strconv.FormatUint(r.InstanceID(), 10),
		Fill: float64(r.Used()) / float64(r.Capacity()), ConsumerAttached: id.Pid != 0 && !id.Closed, ConsumerAlive: alive}
}

// status returns the subscription's status.
func (s *subscription) status() RingSetStatus {
	st := RingSetStatus{Project: s.sub.Project, Subscription: s.sub.Subscription, Dir: s.dir, Streams: int(s.nstreams.Load()),
		CommitRing: ringStatus(s.commit, s.d.cfg.ReaderTimeout), NumUnackedMessages: s.held.Msgs.Load(),
		HeldMessages: s.held.Msgs.Load(), HeldBytes: s.held.Bytes.Load(), MetricsAddr: s.d.metricsAddr}
	for _, p := range s.parts {
		p.mu.RLock()
		rs := ringStatus(p.ring, s.d.cfg.ReaderTimeout)
		var msgs int64
		rs.Batches, msgs, _ = p.table.Stats()
		rs.Messages = msgs
		p.mu.RUnlock()
		st.Partitions = append(st.Partitions, rs)
	}
	return st
}
