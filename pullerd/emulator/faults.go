package emulator

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Forever is the count that makes InjectUnaryError fail every call until
// ClearUnaryErrors.
const Forever = -1

// Stats counts what the emulator did since New; Restart does not reset it.
type Stats struct {
	// StreamsOpened counts StreamingPull calls, including those failed by
	// FailNextStreams and those rejected as invalid.
	StreamsOpened int64
	// StreamsActive is the number of streams being served now.
	StreamsActive int64
	// StreamsFailedOnOpen counts streams ended by FailNextStreams.
	StreamsFailedOnOpen int64
	// StreamsClosedByInjection counts open streams ended by CloseStreams.
	StreamsClosedByInjection int64
	// StreamsClosedByTimeout counts streams ended by SetStreamTimeout.
	StreamsClosedByTimeout int64
	// MessagesSent counts messages sent on streams, redeliveries included.
	MessagesSent int64
	// ResponsesSent counts StreamingPullResponses that carried messages.
	ResponsesSent int64
	// Polls counts the Pull calls that streams made on pstest, and
	// EmptyPolls those that found nothing to deliver; an idle stream polls
	// at most about once per MaxPollInterval.
	Polls      int64
	EmptyPolls int64
	// UnaryErrorsInjected counts unary calls failed by InjectUnaryError.
	UnaryErrorsInjected int64
}

// counters is the live form of Stats.
type counters struct {
	opened, active, failedOnOpen, closedByInjection, closedByTimeout atomic.Int64
	messagesSent, responsesSent, polls, emptyPolls, unaryInjected    atomic.Int64
}

// Stats returns the emulator's counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		StreamsOpened:            c.opened.Load(),
		StreamsActive:            c.active.Load(),
		StreamsFailedOnOpen:      c.failedOnOpen.Load(),
		StreamsClosedByInjection: c.closedByInjection.Load(),
		StreamsClosedByTimeout:   c.closedByTimeout.Load(),
		MessagesSent:             c.messagesSent.Load(),
		ResponsesSent:            c.responsesSent.Load(),
		Polls:                    c.polls.Load(),
		EmptyPolls:               c.emptyPolls.Load(),
		UnaryErrorsInjected:      c.unaryInjected.Load(),
	}
}

// MaxOpenTimes is how many open times StreamStats keeps per subscription: the
// most recent ones.
const MaxOpenTimes = 10_000

// StreamStats counts the StreamingPull streams of one subscription since New;
// Restart does not reset it. A stream counts from the moment the emulator
// accepted its initial request until it ends: streams failed by
// FailNextStreams or refused as invalid are not counted.
type StreamStats struct {
	// Open is the number of the subscription's streams open now.
	Open int
	// Peak is the most streams open at once since New or the last
	// ResetStreamPeak.
	Peak int
	// Opens counts the streams opened since New.
	Opens int
	// OpenTimes are the times the last MaxOpenTimes streams were opened,
	// oldest first.
	OpenTimes []time.Time
}

// subStreams is the live form of one subscription's StreamStats. It is
// guarded by Server.streamsMu.
type subStreams struct {
	open, peak, opens int
	times             []time.Time // the last MaxOpenTimes are kept, at most 2 x MaxOpenTimes held
}

// opened counts a stream opened at now.
func (c *subStreams) opened(now time.Time) {
	c.open++
	c.opens++
	c.peak = max(c.peak, c.open)
	if len(c.times) >= 2*MaxOpenTimes {
		c.times = append(c.times[:0], c.times[len(c.times)-MaxOpenTimes+1:]...)
	}
	c.times = append(c.times, now)
}

// subStreamsLocked returns the counters of subscription sub (a full name),
// creating them. Callers hold streamsMu.
func (s *Server) subStreamsLocked(sub string) *subStreams {
	if s.perSub == nil {
		s.perSub = map[string]*subStreams{}
	}
	c := s.perSub[sub]
	if c == nil {
		c = &subStreams{}
		s.perSub[sub] = c
	}
	return c
}

// StreamStats returns the StreamingPull stream counts of subscription sub, a
// short ID or a full "projects/<p>/subscriptions/<s>" name. A subscription
// that never had a stream has zero counts.
func (s *Server) StreamStats(sub string) StreamStats {
	name := SubscriptionName(s.cfg.Project, sub)
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	c := s.perSub[name]
	if c == nil {
		return StreamStats{}
	}
	times := c.times[max(0, len(c.times)-MaxOpenTimes):]
	return StreamStats{Open: c.open, Peak: c.peak, Opens: c.opens, OpenTimes: append([]time.Time(nil), times...)}
}

// ResetStreamPeak sets the Peak of subscription sub (a short ID or a full
// name) to the number of its streams open now, so that a later StreamStats
// shows the most streams open at once from this moment.
func (s *Server) ResetStreamPeak(sub string) {
	name := SubscriptionName(s.cfg.Project, sub)
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if c := s.perSub[name]; c != nil {
		c.peak = c.open
	}
}

// faults holds the injected faults. The zero value injects nothing.
type faults struct {
	mu            sync.Mutex
	openFaults    []*status.Status       // for the next StreamingPull calls, oldest first
	streamTimeout time.Duration          // 0: streams live until closed
	unary         map[string]*unaryFault // by full gRPC method name
}

// unaryFault fails the next remaining calls of one method (all if remaining < 0).
type unaryFault struct {
	st        *status.Status
	remaining int
}

// injectedClose is the cancel cause of a stream ended by CloseStreams.
type injectedClose struct{ st *status.Status }

func (c injectedClose) Error() string { return "emulator: injected stream close: " + c.st.String() }

// FailNextStreams makes the next n StreamingPull calls fail with code and msg
// once they have received their initial request, before any message is sent.
// With codes.OK the streams end normally instead, as if the server closed
// them at once. Calls add up: FailNextStreams(1, A) then FailNextStreams(1, B)
// fails the next stream with A and the one after with B. A non-positive n
// does nothing.
func (s *Server) FailNextStreams(n int, code codes.Code, msg string) {
	if n <= 0 {
		return
	}
	st := status.New(code, msg)
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	for i := 0; i < n; i++ {
		s.faults.openFaults = append(s.faults.openFaults, st)
	}
	s.log.Info("pubsub emulator: next streams will fail", zap.Int("n", n), zap.Stringer("code", code))
}

// takeOpenFault returns the fault for the stream being opened, if any.
func (f *faults) takeOpenFault() (*status.Status, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.openFaults) == 0 {
		return nil, false
	}
	st := f.openFaults[0]
	f.openFaults = f.openFaults[1:]
	return st, true
}

// CloseStreams ends every open StreamingPull stream with code and msg, or
// normally with codes.OK (a server-initiated close, which Pub/Sub does
// routinely). Messages sent on the streams and not acked stay leased until
// their ack deadline. It returns the number of streams it ended. A stream
// whose send is blocked on a client that does not read ends once that send
// completes.
func (s *Server) CloseStreams(code codes.Code, msg string) int {
	cause := injectedClose{st: status.New(code, msg)}
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	for st := range s.streams {
		st.cancel(cause)
	}
	s.log.Info("pubsub emulator: closing streams", zap.Int("n", len(s.streams)), zap.Stringer("code", code))
	return len(s.streams)
}

// SetStreamTimeout makes streams opened from now on end normally after d,
// as Pub/Sub closes streams after a while (pstest.Server.SetStreamTimeout
// does the same for pstest's own streams). Zero, the default, disables it.
func (s *Server) SetStreamTimeout(d time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.streamTimeout = d
}

func (f *faults) timeout() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streamTimeout
}

// unaryMethods maps every unary method of the served services, by short
// and by full name, to its full name.
var unaryMethods = func() map[string]string {
	m := map[string]string{}
	for _, sd := range []grpc.ServiceDesc{pb.Publisher_ServiceDesc, pb.Subscriber_ServiceDesc, pb.SchemaService_ServiceDesc} {
		for _, md := range sd.Methods {
			full := "/" + sd.ServiceName + "/" + md.MethodName
			m[md.MethodName] = full
			m[full] = full
		}
	}
	return m
}()

// InjectUnaryError makes the next count calls of a unary RPC fail with code
// and msg, or every call until ClearUnaryErrors if count is Forever. method
// is a short name such as "Acknowledge", "ModifyAckDeadline", "Publish" or
// "Pull", or a full one such as "/google.pubsub.v1.Subscriber/Acknowledge".
// A new injection for a method replaces the previous one.
//
// It affects only calls that clients make over gRPC: the acks and modacks
// that clients send on a StreamingPull stream, and the emulator's own calls to
// pstest, are not failed. (pstest's reactors, Config.Reactors, fail those too.)
func (s *Server) InjectUnaryError(method string, code codes.Code, msg string, count int) error {
	full, ok := unaryMethods[method]
	if !ok {
		names := make([]string, 0, len(unaryMethods))
		for k := range unaryMethods {
			if !strings.HasPrefix(k, "/") {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		return fmt.Errorf("emulator: inject error: unknown unary method %q (known: %s)", method, strings.Join(names, ", "))
	}
	if code == codes.OK {
		return fmt.Errorf("emulator: inject error into %s: code OK is not an error", full)
	}
	if count == 0 || count < Forever {
		return fmt.Errorf("emulator: inject error into %s: bad count %d: want a positive count or Forever", full, count)
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	if s.faults.unary == nil {
		s.faults.unary = map[string]*unaryFault{}
	}
	s.faults.unary[full] = &unaryFault{st: status.New(code, msg), remaining: count}
	s.log.Info("pubsub emulator: injecting unary errors", zap.String("method", full),
		zap.Stringer("code", code), zap.Int("count", count))
	return nil
}

// ClearUnaryErrors removes every error injected by InjectUnaryError.
func (s *Server) ClearUnaryErrors() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.unary = nil
}

// takeUnary returns the injected error for one call of method, or nil.
func (f *faults) takeUnary(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	uf := f.unary[method]
	if uf == nil {
		return nil
	}
	if uf.remaining > 0 {
		uf.remaining--
		if uf.remaining == 0 {
			delete(f.unary, method)
		}
	}
	return uf.st.Err()
}

// unaryInterceptor fails the calls chosen by InjectUnaryError.
func (f *faults) unaryInterceptor(c *counters, log *zap.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := f.takeUnary(info.FullMethod); err != nil {
			c.unaryInjected.Add(1)
			log.Debug("pubsub emulator: injected error", zap.String("method", info.FullMethod), zap.Error(err))
			return nil, err
		}
		return handler(ctx, req)
	}
}
