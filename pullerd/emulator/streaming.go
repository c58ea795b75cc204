package emulator

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// pstestDefaultAckDeadline is the lease pstest gives pulled messages of a
// subscription created with ack_deadline_seconds 0.
const pstestDefaultAckDeadline = 10

// maxAckDeadlineSeconds is Pub/Sub's longest ack deadline.
const maxAckDeadlineSeconds = 600

// errStreamTimeout is the cancel cause of a stream that outlived the timeout
// set by SetStreamTimeout.
var errStreamTimeout = errors.New("emulator: stream timeout")

// recvEnded is the cancel cause of a stream whose client side ended: the
// client half-closed (io.EOF) or cancelled.
type recvEnded struct{ err error }

func (r recvEnded) Error() string { return "emulator: stream receive: " + r.err.Error() }
func (r recvEnded) Unwrap() error { return r.err }

// lease is a message sent on a stream and neither acked nor nacked since.
type lease struct {
	size    int64
	expires time.Time
}

// stream is one StreamingPull call. Its handler goroutine pulls from pstest
// and sends; a second goroutine receives the client's requests and forwards
// acks and modacks to pstest.
type stream struct {
	id     uint64
	srv    *Server
	b      *backend
	gs     pb.Subscriber_StreamingPullServer
	ctx    context.Context // ends when the stream must end; see end
	cancel context.CancelCauseFunc
	log    *zap.Logger

	sub         string
	props       *pb.StreamingPullResponse_SubscriptionProperties
	subDeadline int32        // seconds pstest leases pulled messages for
	deadline    atomic.Int32 // the stream's ack deadline, in seconds
	maxMsgs     int64        // client flow control; <= 0: none
	maxBytes    int64        // client flow control; <= 0: none
	flow        bool         // maxMsgs > 0 || maxBytes > 0: track leases
	pings       bool         // answer keepalive requests (protocol_version >= 1)
	pendingPing atomic.Bool
	wake        chan struct{} // capacity 1: credit returned, messages nacked, ping

	mu         sync.Mutex // guards the lease fields, kept only if flow
	leases     map[string]lease
	outBytes   int64
	nextExpiry time.Time // no lease expires before; zero if no lease
	avgSize    int64     // mean size of the last batch, for byte credit

	sent int64 // messages sent; only the handler goroutine uses it
}

// streamingPull serves one StreamingPull call for backend b: it validates the
// initial request, then pulls from pstest in batches and sends them, until the
// client goes away, the server stops, or a fault ends the stream.
func (s *Server) streamingPull(b *backend, gs pb.Subscriber_StreamingPullServer) error {
	s.stats.opened.Add(1)
	req, err := gs.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return status.Error(codes.InvalidArgument, "emulator: stream closed before its initial StreamingPullRequest")
		}
		return err
	}
	if fault, ok := s.faults.takeOpenFault(); ok {
		s.stats.failedOnOpen.Add(1)
		s.log.Debug("pubsub emulator: stream failed on open",
			zap.String("subscription", req.GetSubscription()), zap.Stringer("code", fault.Code()))
		return fault.Err()
	}
	st, err := s.newStream(b, gs, req)
	if err != nil {
		return err
	}
	defer st.cancel(nil)
	s.register(st)
	defer s.unregister(st)
	s.stats.active.Add(1)
	defer s.stats.active.Add(-1)
	if d := s.faults.timeout(); d > 0 {
		t := time.AfterFunc(d, func() { st.cancel(errStreamTimeout) })
		defer t.Stop()
	}
	st.log.Debug("pubsub emulator: stream open",
		zap.Int32("ack_deadline_s", st.deadline.Load()),
		zap.Int64("max_outstanding_messages", st.maxMsgs),
		zap.Int64("max_outstanding_bytes", st.maxBytes))

	if err := st.handle(req, true); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		st.receive()
	}()
	return st.end(st.run())
}

// newStream validates the initial request and looks up its subscription.
func (s *Server) newStream(b *backend, gs pb.Subscriber_StreamingPullServer, req *pb.StreamingPullRequest) (*stream, error) {
	if req.GetSubscription() == "" {
		return nil, status.Error(codes.InvalidArgument, "emulator: subscription is required in the initial StreamingPullRequest")
	}
	secs := req.GetStreamAckDeadlineSeconds()
	if secs < 1 || secs > maxAckDeadlineSeconds {
		return nil, status.Errorf(codes.InvalidArgument,
			"emulator: stream_ack_deadline_seconds=%d: want 1 to %d (Pub/Sub itself wants at least 10)", secs, maxAckDeadlineSeconds)
	}
	sub, err := b.fake.GServer.GetSubscription(gs.Context(), &pb.GetSubscriptionRequest{Subscription: req.GetSubscription()})
	if err != nil {
		return nil, err
	}
	subDeadline := sub.GetAckDeadlineSeconds()
	if subDeadline == 0 {
		subDeadline = pstestDefaultAckDeadline
	}
	ctx, cancel := context.WithCancelCause(gs.Context())
	st := &stream{
		srv:    s,
		b:      b,
		gs:     gs,
		ctx:    ctx,
		cancel: cancel,
		sub:    req.GetSubscription(),
		props: &pb.StreamingPullResponse_SubscriptionProperties{
			ExactlyOnceDeliveryEnabled: sub.GetEnableExactlyOnceDelivery(),
			MessageOrderingEnabled:     sub.GetEnableMessageOrdering(),
		},
		subDeadline: subDeadline,
		maxMsgs:     req.GetMaxOutstandingMessages(),
		maxBytes:    req.GetMaxOutstandingBytes(),
		pings:       req.GetProtocolVersion() >= 1,
		wake:        make(chan struct{}, 1),
	}
	st.deadline.Store(secs)
	st.flow = st.maxMsgs > 0 || st.maxBytes > 0
	if st.flow {
		st.leases = map[string]lease{}
	}
	return st, nil
}

// register adds st to the open streams, names it and counts it in its
// subscription's StreamStats.
func (s *Server) register(st *stream) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	s.nextID++
	st.id = s.nextID
	st.log = s.log.With(zap.Uint64("stream", st.id), zap.String("subscription", st.sub))
	s.streams[st] = struct{}{}
	s.subStreamsLocked(st.sub).opened(time.Now())
}

// unregister removes st from the open streams.
func (s *Server) unregister(st *stream) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	delete(s.streams, st)
	s.subStreamsLocked(st.sub).open--
}

// end turns the reason the stream ended into the RPC's result and counts it.
// runErr is run's result.
func (st *stream) end(runErr error) error {
	cause := context.Cause(st.ctx)
	var injected injectedClose
	var received recvEnded
	var err error
	switch {
	case errors.As(cause, &injected):
		st.srv.stats.closedByInjection.Add(1)
		err = injected.st.Err() // nil for codes.OK: a normal close
	case errors.Is(cause, errStreamTimeout):
		st.srv.stats.closedByTimeout.Add(1)
	case runErr != nil:
		err = runErr
	case errors.As(cause, &received):
		if !errors.Is(received.err, io.EOF) {
			err = received.err
		}
	case cause != nil:
		if _, ok := status.FromError(cause); ok {
			err = cause // a request the stream refused
		} else {
			err = status.FromContextError(cause).Err()
		}
	}
	st.log.Debug("pubsub emulator: stream end", zap.Int64("messages_sent", st.sent),
		zap.NamedError("cause", cause), zap.Error(err))
	return err
}

// receive handles the client's requests until the client side ends or a
// request is refused, then cancels the stream.
func (st *stream) receive() {
	for {
		req, err := st.gs.Recv()
		if err != nil {
			st.cancel(recvEnded{err: err})
			return
		}
		if err := st.handle(req, false); err != nil {
			st.cancel(err)
			return
		}
	}
}

// handle applies one request: it forwards acks and modacks to pstest,
// updates the stream's leases and ack deadline, and notes keepalive pings.
// It returns an INVALID_ARGUMENT status for a request Pub/Sub would refuse.
func (st *stream) handle(req *pb.StreamingPullRequest, initial bool) error {
	if !initial {
		if req.GetMaxOutstandingMessages() != 0 || req.GetMaxOutstandingBytes() != 0 {
			return status.Error(codes.InvalidArgument,
				"emulator: max_outstanding_messages and max_outstanding_bytes may only be set on the initial StreamingPullRequest")
		}
		if s := req.GetSubscription(); s != "" && s != st.sub {
			return status.Errorf(codes.InvalidArgument, "emulator: subscription %q differs from the stream's %q", s, st.sub)
		}
		if secs := req.GetStreamAckDeadlineSeconds(); secs != 0 {
			if secs < 1 || secs > maxAckDeadlineSeconds {
				return status.Errorf(codes.InvalidArgument,
					"emulator: stream_ack_deadline_seconds=%d: want 1 to %d", secs, maxAckDeadlineSeconds)
			}
			st.deadline.Store(secs)
		}
	}
	modIDs, modSecs := req.GetModifyDeadlineAckIds(), req.GetModifyDeadlineSeconds()
	if len(modIDs) != len(modSecs) {
		return status.Errorf(codes.InvalidArgument,
			"emulator: %d modify_deadline_ack_ids but %d modify_deadline_seconds", len(modIDs), len(modSecs))
	}
	for i, secs := range modSecs {
		if secs < 0 || secs > maxAckDeadlineSeconds {
			return status.Errorf(codes.InvalidArgument,
				"emulator: modify_deadline_seconds=%d for ack ID %q: want 0 to %d", secs, modIDs[i], maxAckDeadlineSeconds)
		}
	}
	fake := &st.b.fake.GServer
	if ids := req.GetAckIds(); len(ids) > 0 {
		if _, err := fake.Acknowledge(st.ctx, &pb.AcknowledgeRequest{Subscription: st.sub, AckIds: ids}); err != nil {
			// Acks on a stream have no response: a refused ack is lost, and
			// the message is redelivered after its deadline.
			st.log.Warn("pubsub emulator: stream acks dropped", zap.Int("n", len(ids)), zap.Error(err))
		} else {
			st.srv.settle(st.sub, ids, settleAck, 0)
		}
	}
	// One ModifyAckDeadline per run of equal deadlines, in request order.
	for start := 0; start < len(modIDs); {
		end := start + 1
		for end < len(modIDs) && modSecs[end] == modSecs[start] {
			end++
		}
		ids, secs := modIDs[start:end], modSecs[start]
		if _, err := fake.ModifyAckDeadline(st.ctx, &pb.ModifyAckDeadlineRequest{
			Subscription: st.sub, AckIds: ids, AckDeadlineSeconds: secs,
		}); err != nil {
			st.log.Warn("pubsub emulator: stream modacks dropped", zap.Int("n", len(ids)), zap.Error(err))
		} else {
			st.srv.settle(st.sub, ids, settleModack, secs)
		}
		start = end
	}
	if !initial && st.pings && len(req.GetAckIds()) == 0 && len(modIDs) == 0 {
		st.pendingPing.Store(true)
		st.poke()
	}
	return nil
}

// poke wakes the handler goroutine if it waits.
func (st *stream) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// run pulls and sends until the stream's context ends or a send fails.
// When nothing can be delivered it waits, for a poll interval that doubles
// from MinPollInterval to MaxPollInterval, or until a publish, an ack that
// returns credit, a nack or a ping wakes it.
func (st *stream) run() error {
	cfg := &st.srv.cfg
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var backoff time.Duration
	for {
		if st.ctx.Err() != nil {
			return nil
		}
		if st.pendingPing.Swap(false) {
			if err := st.gs.Send(&pb.StreamingPullResponse{}); err != nil {
				return err
			}
		}
		// Taken before polling, so that a publish during the poll wakes us.
		published := st.srv.published.wait()
		n, wait := st.credit(time.Now())
		if n > 0 {
			sent, err := st.deliver(n)
			if err != nil {
				return err
			}
			if sent > 0 {
				backoff = 0
				continue
			}
			backoff = min(max(2*backoff, cfg.MinPollInterval), cfg.MaxPollInterval)
			wait = backoff
		} else {
			published = nil // no credit: new messages would not help
		}
		timer.Reset(wait)
		select {
		case <-st.ctx.Done():
			return nil
		case <-st.wake:
		case <-published:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// credit returns how many messages the stream may ask pstest for now. When
// it may not ask for any, it also returns how long to wait before the next
// lease expires and returns credit.
func (st *stream) credit(now time.Time) (int, time.Duration) {
	cfg := &st.srv.cfg
	n := int64(cfg.MaxMessagesPerPull)
	if !st.flow {
		return int(n), 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expireLocked(now)
	if st.maxMsgs > 0 {
		n = min(n, st.maxMsgs-int64(len(st.leases)))
	}
	if st.maxBytes > 0 {
		// Pub/Sub stops sending once the outstanding bytes reach the limit,
		// so the last batch may pass it; the mean message size keeps it
		// from passing it by much.
		switch {
		case st.outBytes >= st.maxBytes:
			n = 0
		case st.avgSize == 0:
			n = min(n, 1)
		default:
			n = min(n, (st.maxBytes-st.outBytes+st.avgSize-1)/st.avgSize)
		}
	}
	if n > 0 {
		return int(n), 0
	}
	wait := cfg.MaxPollInterval
	if !st.nextExpiry.IsZero() {
		wait = min(wait, max(st.nextExpiry.Sub(now), cfg.MinPollInterval))
	}
	return 0, wait
}

// expireLocked drops the leases whose ack deadline passed: pstest makes their
// messages available again, so they no longer count against flow control.
func (st *stream) expireLocked(now time.Time) {
	if st.nextExpiry.IsZero() || now.Before(st.nextExpiry) {
		return
	}
	var next time.Time
	for id, l := range st.leases {
		if !now.Before(l.expires) {
			delete(st.leases, id)
			st.outBytes -= l.size
			continue
		}
		if next.IsZero() || l.expires.Before(next) {
			next = l.expires
		}
	}
	st.nextExpiry = next
}

// deliver pulls up to n messages from pstest and sends them in responses of
// at most MaxResponseBytes. It returns how many it sent.
func (st *stream) deliver(n int) (int, error) {
	fake := &st.b.fake.GServer
	res, err := fake.Pull(st.ctx, &pb.PullRequest{
		Subscription:      st.sub,
		MaxMessages:       int32(n),
		ReturnImmediately: true, //nolint:staticcheck // deprecated but honoured by pstest: the stream does its own waiting
	})
	if err != nil {
		if st.ctx.Err() != nil {
			return 0, nil
		}
		return 0, err
	}
	st.srv.stats.polls.Add(1)
	pulled := res.GetReceivedMessages()
	if len(pulled) == 0 {
		st.srv.stats.emptyPolls.Add(1)
		return 0, nil
	}
	now := time.Now()
	// pstest returns its own ReceivedMessages, which it changes under its
	// lock when it redelivers them: send copies.
	msgs := make([]*pb.ReceivedMessage, len(pulled))
	ids := make([]string, len(pulled))
	sizes := make([]int, len(pulled))
	for i, rm := range pulled {
		m := &pb.ReceivedMessage{AckId: rm.AckId, Message: rm.Message, DeliveryAttempt: rm.DeliveryAttempt}
		msgs[i], ids[i], sizes[i] = m, m.AckId, proto.Size(m)
	}
	// pstest leased the messages for the subscription's deadline; apply the
	// stream's.
	secs := st.deadline.Load()
	if secs != st.subDeadline {
		st.b.internal.add(ids, secs)
		if _, err := fake.ModifyAckDeadline(st.ctx, &pb.ModifyAckDeadlineRequest{
			Subscription: st.sub, AckIds: ids, AckDeadlineSeconds: secs,
		}); err != nil {
			st.b.internal.remove(ids)
			secs = st.subDeadline
			st.log.Warn("pubsub emulator: cannot apply the stream's ack deadline", zap.Error(err))
		}
	}
	if st.flow {
		st.lease(ids, sizes, now.Add(time.Duration(secs)*time.Second))
	}
	limit := st.srv.cfg.MaxResponseBytes
	start, bytes := 0, 0
	for i, size := range sizes {
		size = protowire.SizeTag(1) + protowire.SizeBytes(size) // as a field of the response
		if i > start && bytes+size > limit {
			if err := st.send(msgs[start:i]); err != nil {
				return 0, err
			}
			start, bytes = i, 0
		}
		bytes += size
	}
	if err := st.send(msgs[start:]); err != nil {
		return 0, err
	}
	return len(msgs), nil
}

// send sends one response carrying msgs.
func (st *stream) send(msgs []*pb.ReceivedMessage) error {
	err := st.gs.Send(&pb.StreamingPullResponse{ReceivedMessages: msgs, SubscriptionProperties: st.props})
	if err != nil {
		return err
	}
	st.sent += int64(len(msgs))
	st.srv.stats.messagesSent.Add(int64(len(msgs)))
	st.srv.stats.responsesSent.Add(1)
	return nil
}

// lease records messages just sent, for flow control.
func (st *stream) lease(ids []string, sizes []int, expires time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var total int64
	for i, id := range ids {
		size := int64(sizes[i])
		if old, ok := st.leases[id]; ok {
			st.outBytes -= old.size
		}
		st.leases[id] = lease{size: size, expires: expires}
		st.outBytes += size
		total += size
	}
	st.avgSize = max(total/int64(len(ids)), 1)
	if st.nextExpiry.IsZero() || expires.Before(st.nextExpiry) {
		st.nextExpiry = expires
	}
}

// settleKind says what a client did with ack IDs.
type settleKind int

const (
	settleAck    settleKind = iota // acknowledged
	settleModack                   // modified the ack deadline; 0 is a nack
)

// settle applies acks or modacks of a subscription's messages, whichever
// channel they came by, to the leases of the subscription's open streams.
// Ack IDs are valid across the streams of a subscription.
func (s *Server) settle(sub string, ackIDs []string, kind settleKind, secs int32) {
	if len(ackIDs) == 0 {
		return
	}
	nack := kind == settleModack && secs == 0
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	for st := range s.streams {
		if st.sub != sub {
			continue
		}
		if st.flow && st.settleLeases(ackIDs, kind == settleAck || nack, secs) {
			st.poke()
		}
		if nack {
			st.poke() // the messages can be delivered again at once
		}
	}
}

// settleLeases releases (or extends to secs from now) the leases of ackIDs
// and reports whether it released any.
func (st *stream) settleLeases(ackIDs []string, release bool, secs int32) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	expires := time.Now().Add(time.Duration(secs) * time.Second)
	freed := false
	for _, id := range ackIDs {
		l, ok := st.leases[id]
		if !ok {
			continue
		}
		if release {
			delete(st.leases, id)
			st.outBytes -= l.size
			freed = true
			continue
		}
		l.expires = expires
		st.leases[id] = l
	}
	return freed
}
