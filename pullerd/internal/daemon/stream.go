package daemon

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pubsub-shm/pubsub-shm/ackd"
)

// streamBackoff paces reopening a stream that failed: 100 ms growing x2 to 30 s, jittered.
var streamBackoff = ackd.Backoff{Initial: 100 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2}

// retireDrain bounds how long a retired stream waits for the server to end its
// StreamingPull after the half-close; then the stream is cancelled.
const retireDrain = 10 * time.Second

// stream is one StreamingPull stream of a subscription, reopened for as long as the
// subscription runs, or until a resize retires it.
type stream struct {
	s   *subscription
	id  int // unique within the subscription; part of the stream's client_id
	log *zap.Logger
	// cancel ends the stream at once; its context derives from the subscription's
	// streamCtx, so shutdown ends every stream.
	cancel context.CancelFunc
	// retired is closed by retire.
	retired chan struct{}
}

// retire asks the stream to end cleanly: it half-closes its StreamingPull, keeps handing
// the messages the server still sends to the partitions until the server ends the stream
// (at most retireDrain, then it is cancelled), and does not reopen. A stream retired
// before it opened never opens. Called once, under the subscription's streamsMu.
func (st *stream) retire() { close(st.retired) }

// isRetired reports whether retire was called.
func (st *stream) isRetired() bool {
	select {
	case <-st.retired:
		return true
	default:
		return false
	}
}

// sleep waits d, or until ctx ends or the stream is retired (then it returns an error).
func (st *stream) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-st.retired:
		return errors.New("stream retired")
	case <-t.C:
		return nil
	}
}

// run opens the stream after a random stagger and keeps it open: it reopens at once
// (with a little jitter) after the server closes it, and with exponential back-off and
// jitter after an error such as RESOURCE_EXHAUSTED or UNAVAILABLE. It returns when ctx
// ends, or when the stream was retired and its StreamingPull has ended.
func (st *stream) run(ctx context.Context) {
	if d := st.s.d.cfg.Stagger; d > 0 {
		if st.sleep(ctx, rand.N(d)) != nil {
			return
		}
	}
	attempt := 0
	for {
		if st.isRetired() {
			return
		}
		delivered, err := st.once(ctx)
		if ctx.Err() != nil {
			return
		}
		if st.isRetired() {
			st.log.Debug("retired stream ended", zap.Int("delivered", delivered), zap.Error(err))
			return
		}
		code := status.Code(err)
		st.s.m.streamErrors.WithLabelValues(code.String()).Inc()
		st.s.m.reopens.Inc()
		if delivered > 0 {
			attempt = 0
		}
		var wait time.Duration
		switch {
		case code == codes.OK:
			wait = rand.N(50 * time.Millisecond) // a routine server close
			st.log.Debug("stream closed by the server; reopening", zap.Int("delivered", delivered))
		default:
			if code == codes.ResourceExhausted {
				st.s.m.resourceExhausted.Inc()
			}
			wait = streamBackoff.Delay(attempt)
			attempt++
			lvl := zap.WarnLevel
			switch code {
			case codes.NotFound, codes.PermissionDenied, codes.InvalidArgument, codes.Unauthenticated, codes.FailedPrecondition:
				lvl = zap.ErrorLevel // needs a human: wrong subscription, credentials or quota
			}
			st.log.Log(lvl, "stream failed; reopening after back-off", zap.Stringer("code", code),
				zap.Int("delivered", delivered), zap.Duration("backoff", wait), zap.Error(err))
		}
		if st.sleep(ctx, wait) != nil {
			return
		}
	}
}

// once opens one stream and receives until it ends. It returns the messages it delivered
// and the error that ended it (nil for a normal server close).
func (st *stream) once(ctx context.Context) (delivered int, err error) {
	s := st.s
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pull, err := s.d.client.StreamingPull(sctx)
	if err != nil {
		return 0, fmt.Errorf("open StreamingPull on %s: %w", s.sub.FullName(), err)
	}
	n := max(1, s.nstreams.Load())
	err = pull.Send(&pb.StreamingPullRequest{
		Subscription:             s.sub.FullName(),
		StreamAckDeadlineSeconds: int32(s.d.cfg.AckDeadline / time.Second),
		ClientId:                 fmt.Sprintf("pullerd-%d-%s-%d", os.Getpid(), s.sub.Subscription, st.id),
		MaxOutstandingMessages:   max(1, s.d.cfg.MaxOutstandingMessages/n),
		MaxOutstandingBytes:      max(1, s.d.cfg.MaxOutstandingBytes/n),
	})
	if err != nil {
		if errors.Is(err, io.EOF) {
			_, err = pull.Recv() // the real error
		}
		return 0, err
	}
	s.m.activeStreams.Inc()
	defer s.m.activeStreams.Dec()
	defer st.watchRetire(sctx, pull)()
	for {
		// A retired stream reads on past the flow-control bounds: what the server sent
		// before the half-close is leased to pullerd, and is redelivered late (after its
		// ack deadline) unless it is read. The server's per-stream flow control bounds it.
		if err := s.waitForRoom(sctx, st.retired); err != nil {
			return delivered, nil
		}
		resp, err := pull.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return delivered, nil
			}
			return delivered, err
		}
		if resp.GetSubscriptionProperties().GetMessageOrderingEnabled() {
			s.ordering.Store(true)
		}
		msgs := resp.GetReceivedMessages()
		if len(msgs) == 0 {
			continue
		}
		delivered += len(msgs)
		s.dispatch(sctx, msgs)
	}
}

// watchRetire half-closes pull once the stream is retired, so that the server ends the
// stream after what it already sent, and cancels the stream (st.cancel) if the server has
// not ended it retireDrain later. ctx is pull's context. The returned func ends the watch
// and waits for it.
func (st *stream) watchRetire(ctx context.Context, pull pb.Subscriber_StreamingPullClient) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-st.retired:
		case <-done:
			return
		case <-ctx.Done():
			return
		}
		// once sent the initial request before the watch began and sends nothing after
		// it, so CloseSend does not race a Send.
		if err := pull.CloseSend(); err != nil {
			st.log.Debug("half-close of a retired stream failed", zap.Error(err))
		}
		t := time.NewTimer(retireDrain)
		defer t.Stop()
		select {
		case <-t.C:
			st.log.Warn("retired stream still open after the drain time; cancelling it (what the server sent since is redelivered after its ack deadline)",
				zap.Duration("drain", retireDrain))
			st.cancel()
		case <-done:
		case <-ctx.Done():
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// waitForRoom blocks while the subscription holds as many messages or bytes as it may:
// the stream stops reading, gRPC flow control stops the server. It returns at once (nil)
// when retired is closed.
func (s *subscription) waitForRoom(ctx context.Context, retired <-chan struct{}) error {
	cfg := &s.d.cfg
	full := func() bool {
		return s.held.Msgs.Load() >= cfg.MaxOutstandingMessages || s.held.Bytes.Load() >= cfg.MaxOutstandingBytes
	}
	if !full() {
		return nil
	}
	s.m.backpressured.Inc()
	d := time.Millisecond
	for full() {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-retired:
			t.Stop()
			return nil
		case <-t.C:
		}
		d = min(2*d, 20*time.Millisecond)
	}
	return nil
}

// dispatch hands a response's messages to partitions, one slice per partition: all to the
// least loaded partition, or, when the subscription orders messages, by ordering key (so
// one key's messages stay in one partition, in order).
func (s *subscription) dispatch(ctx context.Context, msgs []*pb.ReceivedMessage) {
	at := time.Now()
	var bytes int64
	for _, rm := range msgs {
		bytes += msgSize(rm.GetMessage())
	}
	s.held.Add(int64(len(msgs)), bytes)
	s.m.received.Add(float64(len(msgs)))
	s.m.receivedBytes.Add(float64(bytes))
	if !s.ordering.Load() {
		s.handOff(ctx, s.pickPartition(), msgs, at)
		return
	}
	groups := make(map[int][]*pb.ReceivedMessage)
	unkeyed := s.pickPartition()
	for _, rm := range msgs {
		p := unkeyed
		if k := rm.GetMessage().GetOrderingKey(); k != "" {
			h := fnv.New32a()
			h.Write([]byte(k))
			p = int(h.Sum32() % uint32(len(s.parts)))
		}
		groups[p] = append(groups[p], rm)
	}
	for p, g := range groups {
		s.handOff(ctx, p, g, at)
	}
}

// pickPartition returns the partition with the fewest queued slices, starting the search
// at a rotating position.
func (s *subscription) pickPartition() int {
	n := len(s.parts)
	start := int(s.rr.Add(1) % uint64(n))
	best, bestLen := start, s.parts[start].queued()
	for i := 1; i < n && bestLen > 0; i++ {
		j := (start + i) % n
		if l := s.parts[j].queued(); l < bestLen {
			best, bestLen = j, l
		}
	}
	return best
}

// handOff queues a slice for a partition, leased until the partition takes it into a
// batch. It never blocks: the stream goes on reading (and so leasing) what Pub/Sub sends
// while a ring is full; the flow-control limits stop it (waitForRoom). What is still queued
// at shutdown is nacked.
func (s *subscription) handOff(_ context.Context, p int, msgs []*pb.ReceivedMessage, at time.Time) {
	lease := s.inflight.add(msgs, at.Add(s.d.cfg.AckDeadline))
	s.parts[p].enqueue(delivery{msgs: msgs, at: at, lease: lease})
}
