package emulator

import (
	"context"
	"sync"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/protobuf/types/known/emptypb"
)

// service is what the emulator registers on its gRPC server for the
// Publisher, Subscriber and SchemaService services: pstest's GServer, with
// StreamingPull replaced and Publish, Acknowledge and ModifyAckDeadline
// observed so that waiting streams wake up and flow-control credit returns.
type service struct {
	*pstest.GServer
	srv *Server
	b   *backend
}

// Publish forwards to pstest and wakes the streams waiting for messages.
func (svc *service) Publish(ctx context.Context, req *pb.PublishRequest) (*pb.PublishResponse, error) {
	res, err := svc.GServer.Publish(ctx, req)
	if err == nil {
		svc.srv.published.notify()
	}
	return res, err
}

// Acknowledge forwards to pstest and returns the flow-control credit of the
// acked messages to the streams that delivered them.
func (svc *service) Acknowledge(ctx context.Context, req *pb.AcknowledgeRequest) (*emptypb.Empty, error) {
	res, err := svc.GServer.Acknowledge(ctx, req)
	if err == nil {
		svc.srv.settle(req.GetSubscription(), req.GetAckIds(), settleAck, 0)
	}
	return res, err
}

// ModifyAckDeadline forwards to pstest and updates the leases of the streams
// that delivered the messages: a deadline of 0 (a nack) returns their credit
// and wakes the subscription's streams, any other extends the lease.
func (svc *service) ModifyAckDeadline(ctx context.Context, req *pb.ModifyAckDeadlineRequest) (*emptypb.Empty, error) {
	res, err := svc.GServer.ModifyAckDeadline(ctx, req)
	if err == nil {
		svc.srv.settle(req.GetSubscription(), req.GetAckIds(), settleModack, req.GetAckDeadlineSeconds())
	}
	return res, err
}

// StreamingPull serves a stream in batches; see Server.streamingPull.
func (svc *service) StreamingPull(gs pb.Subscriber_StreamingPullServer) error {
	return svc.srv.streamingPull(svc.b, gs)
}

// broadcast wakes every goroutine waiting on the channel returned by wait
// at the time of the next notify.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel that is closed by the next notify.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// notify closes the channel handed out by wait, if any.
func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// modackLog remembers the modacks the emulator sent to pstest itself, to apply
// a stream's ack deadline, so that Messages can leave them out. Each such
// modack is the first one pstest records for its ack ID: the emulator sends
// it before the client has seen the ack ID.
type modackLog struct {
	mu  sync.Mutex
	ids map[string]int32 // ack ID -> deadline in seconds
}

func newModackLog() *modackLog {
	return &modackLog{ids: map[string]int32{}}
}

// add records that the emulator modacks ackIDs to secs.
func (l *modackLog) add(ackIDs []string, secs int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ackIDs {
		l.ids[id] = secs
	}
}

// remove forgets ackIDs, for a modack that pstest refused.
func (l *modackLog) remove(ackIDs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ackIDs {
		delete(l.ids, id)
	}
}

// clear forgets everything, when pstest forgets its messages.
func (l *modackLog) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = map[string]int32{}
}

// snapshotLocked returns a copy of m's exported fields without the modacks
// the emulator sent. m's exported fields must have been filled in by
// pstest's Messages or Message. Callers hold l.mu.
func (l *modackLog) snapshotLocked(m *pstest.Message) *pstest.Message {
	var modacks []pstest.Modack
	var skipped map[string]bool
	for _, ma := range m.Modacks {
		if secs, ok := l.ids[ma.AckID]; ok && secs == ma.AckDeadline && !skipped[ma.AckID] {
			if skipped == nil {
				skipped = map[string]bool{}
			}
			skipped[ma.AckID] = true
			continue
		}
		modacks = append(modacks, ma)
	}
	return &pstest.Message{
		ID:          m.ID,
		Data:        m.Data,
		Attributes:  m.Attributes,
		PublishTime: m.PublishTime,
		Deliveries:  m.Deliveries,
		Acks:        m.Acks,
		Modacks:     modacks,
		OrderingKey: m.OrderingKey,
		Topic:       m.Topic,
	}
}
