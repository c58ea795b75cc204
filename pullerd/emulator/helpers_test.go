package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Started once per process by the Google client libraries.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		// Leaked by the Go client's Subscriber.Receive (v2.9.0): after
		// Receive returns it waits on a ticker that Receive has stopped.
		goleak.IgnoreTopFunction("cloud.google.com/go/pubsub/v2.(*messageIterator).streamKeepAliveHandler"),
	)
}

// newServer starts an emulator with one topic "t" and the given
// subscriptions on it (default: "s"), closed when the test ends.
func newServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Topics == nil {
		cfg.Topics = []string{"t"}
	}
	if cfg.Subscriptions == nil {
		cfg.Subscriptions = []Subscription{{Name: "s", Topic: "t"}}
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv
}

// subscriberClient returns a raw gRPC Subscriber client to srv, its
// connection closed when the test ends.
func subscriberClient(t testing.TB, srv *Server) pb.SubscriberClient {
	t.Helper()
	conn, err := srv.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewSubscriberClient(conn)
}

// testContext returns a context that ends with the test or after d.
func testContext(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// publishN publishes n small messages "m<i>" to topic "t" through the
// server's Go API and returns their IDs in order.
func publishN(t testing.TB, srv *Server, n int) []string {
	t.Helper()
	var ids []string
	for start := 0; start < n; start += 1000 {
		var msgs []*pb.PubsubMessage
		for i := start; i < min(n, start+1000); i++ {
			msgs = append(msgs, &pb.PubsubMessage{Data: fmt.Appendf(nil, "m%d", i)})
		}
		got, err := srv.Publish(context.Background(), "t", msgs...)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
	}
	return ids
}

// reader receives from a StreamingPull stream in a goroutine of its own, so
// that tests can wait for messages with a timeout.
type reader struct {
	pb.Subscriber_StreamingPullClient
	results chan recvResult
}

type recvResult struct {
	res *pb.StreamingPullResponse
	err error
}

// newReader starts receiving from stream until it ends; its goroutine stops
// with the stream (end the stream's context) or with the test.
func newReader(t testing.TB, stream pb.Subscriber_StreamingPullClient) *reader {
	r := &reader{Subscriber_StreamingPullClient: stream, results: make(chan recvResult)}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			res, err := stream.Recv()
			select {
			case r.results <- recvResult{res, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

// openStream opens a StreamingPull stream on subscription sub and sends req
// (with Subscription filled in, and a 10 s ack deadline if it has none) as
// its initial request.
func openStream(ctx context.Context, t testing.TB, c pb.SubscriberClient, sub string, req *pb.StreamingPullRequest) *reader {
	t.Helper()
	stream, err := c.StreamingPull(ctx)
	if err != nil {
		t.Fatalf("StreamingPull: %v", err)
	}
	if req == nil {
		req = &pb.StreamingPullRequest{}
	}
	req.Subscription = sub
	if req.StreamAckDeadlineSeconds == 0 {
		req.StreamAckDeadlineSeconds = 10
	}
	if err := stream.Send(req); err != nil {
		t.Fatalf("send initial request: %v", err)
	}
	return newReader(t, stream)
}

// recvN receives until it holds at least n messages, and fails the test if
// the stream ends or 20 s pass first.
func (r *reader) recvN(t testing.TB, n int) []*pb.ReceivedMessage {
	t.Helper()
	var got []*pb.ReceivedMessage
	timeout := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case res := <-r.results:
			if res.err != nil {
				t.Fatalf("Recv after %d of %d messages: %v", len(got), n, res.err)
			}
			got = append(got, res.res.GetReceivedMessages()...)
		case <-timeout:
			t.Fatalf("received %d of %d messages in 20 s", len(got), n)
		}
	}
	return got
}

// next returns the next response, and fails the test if the stream ends or
// 20 s pass first.
func (r *reader) next(t testing.TB) *pb.StreamingPullResponse {
	t.Helper()
	select {
	case res := <-r.results:
		if res.err != nil {
			t.Fatalf("Recv: %v", res.err)
		}
		return res.res
	case <-time.After(20 * time.Second):
		t.Fatal("no response in 20 s")
	}
	return nil
}

// recvFor receives for d and returns what arrived; the stream must stay open.
func (r *reader) recvFor(t testing.TB, d time.Duration) []*pb.ReceivedMessage {
	t.Helper()
	var got []*pb.ReceivedMessage
	deadline := time.After(d)
	for {
		select {
		case res := <-r.results:
			if res.err != nil {
				t.Fatalf("Recv: %v", res.err)
			}
			got = append(got, res.res.GetReceivedMessages()...)
		case <-deadline:
			return got
		}
	}
}

// end receives until the stream ends and returns its final status (nil for a
// normal end); it fails the test if that takes 20 s.
func (r *reader) end(t testing.TB) error {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case res := <-r.results:
			if errors.Is(res.err, io.EOF) {
				return nil
			}
			if res.err != nil {
				return res.err
			}
		case <-timeout:
			t.Fatal("stream still open after 20 s")
		}
	}
}

// ackIDs returns the ack IDs of msgs.
func ackIDs(msgs []*pb.ReceivedMessage) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.GetAckId()
	}
	return ids
}

// wantCode fails the test unless err has code.
func wantCode(t testing.TB, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("got error %v (code %v), want code %v", err, got, code)
	}
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
