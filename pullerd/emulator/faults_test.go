package emulator

import (
	"context"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc/codes"
)

// TestFailNextStreams checks that the next streams fail on open with the
// injected codes, in order, and that the one after works.
func TestFailNextStreams(t *testing.T) {
	srv := newServer(t, Config{})
	ctx := testContext(t, 30*time.Second)
	publishN(t, srv, 1)
	c := subscriberClient(t, srv)
	sub := SubscriptionName(srv.Project(), "s")

	srv.FailNextStreams(2, codes.ResourceExhausted, "too many streams")
	srv.FailNextStreams(1, codes.Unavailable, "try again")
	srv.FailNextStreams(1, codes.OK, "")
	for _, want := range []codes.Code{codes.ResourceExhausted, codes.ResourceExhausted, codes.Unavailable} {
		wantCode(t, openStream(ctx, t, c, sub, nil).end(t), want)
	}
	if err := openStream(ctx, t, c, sub, nil).end(t); err != nil {
		t.Fatalf("stream closed normally on open: got %v, want a normal end", err)
	}
	if got := openStream(ctx, t, c, sub, nil).recvN(t, 1); string(got[0].GetMessage().GetData()) != "m0" {
		t.Fatalf("got %q, want m0", got[0].GetMessage().GetData())
	}
	st := srv.Stats()
	if st.StreamsOpened != 5 || st.StreamsFailedOnOpen != 4 || st.StreamsActive != 1 {
		t.Fatalf("stats %+v: want 5 opened, 4 failed on open, 1 active", st)
	}
}

// TestCloseStreamsMidStream closes a stream that holds unacked messages and
// checks that a new stream gets the rest, and the unacked ones again once
// nacked or once their deadline passes.
func TestCloseStreamsMidStream(t *testing.T) {
	const n = 300
	srv := newServer(t, Config{})
	ctx := testContext(t, time.Minute)
	ids := publishN(t, srv, n)
	c := subscriberClient(t, srv)
	sub := SubscriptionName(srv.Project(), "s")

	first := openStream(ctx, t, c, sub, &pb.StreamingPullRequest{StreamAckDeadlineSeconds: 1, MaxOutstandingMessages: 100})
	held := first.recvN(t, 100)
	if len(held) != 100 {
		t.Fatalf("got %d messages with max_outstanding_messages=100", len(held))
	}
	if closed := srv.CloseStreams(codes.Unavailable, "server restarting"); closed != 1 {
		t.Fatalf("CloseStreams closed %d streams, want 1", closed)
	}
	wantCode(t, first.end(t), codes.Unavailable)
	if st := srv.Stats(); st.StreamsClosedByInjection != 1 || st.StreamsActive != 0 {
		t.Fatalf("stats %+v: want 1 stream closed by injection and none active", st)
	}

	// The new stream nacks half of the held messages (ack IDs are valid on
	// any stream of the subscription) and lets the others expire.
	second := openStream(ctx, t, c, sub, nil)
	nacked := ackIDs(held[:50])
	secs := make([]int32, len(nacked))
	if err := second.Send(&pb.StreamingPullRequest{ModifyDeadlineAckIds: nacked, ModifyDeadlineSeconds: secs}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for len(seen) < n {
		msgs := second.recvN(t, 1)
		for _, m := range msgs {
			seen[m.GetMessage().GetMessageId()]++
		}
		if err := second.Send(&pb.StreamingPullRequest{AckIds: ackIDs(msgs)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "every message acked", func() bool {
		for _, id := range ids {
			if srv.Message(id).Acks != 1 {
				return false
			}
		}
		return true
	})
	for i, m := range held {
		msg := srv.Message(m.GetMessage().GetMessageId())
		if msg.Deliveries != 2 {
			t.Errorf("held message %s: %d deliveries, want 2", msg.ID, msg.Deliveries)
		}
		wantModacks := 0
		if i < 50 {
			wantModacks = 1 // the nack
		}
		if len(msg.Modacks) != wantModacks {
			t.Errorf("held message %s: modacks %+v, want %d", msg.ID, msg.Modacks, wantModacks)
		}
	}
}

// TestCloseStreamsNormally checks a server-initiated close with codes.OK.
func TestCloseStreamsNormally(t *testing.T) {
	srv := newServer(t, Config{})
	ctx := testContext(t, 30*time.Second)
	c := subscriberClient(t, srv)
	sub := SubscriptionName(srv.Project(), "s")
	streams := []*reader{openStream(ctx, t, c, sub, nil), openStream(ctx, t, c, sub, nil)}
	eventually(t, 5*time.Second, "two streams open", func() bool { return srv.Stats().StreamsActive == 2 })
	if closed := srv.CloseStreams(codes.OK, ""); closed != 2 {
		t.Fatalf("CloseStreams closed %d streams, want 2", closed)
	}
	for _, s := range streams {
		if err := s.end(t); err != nil {
			t.Fatalf("got %v, want a normal end", err)
		}
	}
	if st := srv.Stats(); st.StreamsClosedByInjection != 2 {
		t.Fatalf("stats %+v: want 2 streams closed by injection", st)
	}
}

// TestSetStreamTimeout checks that streams end normally after the timeout.
func TestSetStreamTimeout(t *testing.T) {
	srv := newServer(t, Config{})
	ctx := testContext(t, 30*time.Second)
	c := subscriberClient(t, srv)
	srv.SetStreamTimeout(200 * time.Millisecond)
	start := time.Now()
	if err := openStream(ctx, t, c, SubscriptionName(srv.Project(), "s"), nil).end(t); err != nil {
		t.Fatalf("got %v, want a normal end", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("stream ended after %v, before its 200 ms timeout", d)
	}
	if st := srv.Stats(); st.StreamsClosedByTimeout != 1 {
		t.Fatalf("stats %+v: want 1 stream closed by timeout", st)
	}
}

// TestInjectUnaryError checks counted and permanent unary errors, and that
// acks on a stream are not affected.
func TestInjectUnaryError(t *testing.T) {
	srv := newServer(t, Config{})
	ctx := testContext(t, 30*time.Second)
	ids := publishN(t, srv, 2)
	c := subscriberClient(t, srv)
	sub := SubscriptionName(srv.Project(), "s")
	stream := openStream(ctx, t, c, sub, nil)
	msgs := stream.recvN(t, 2)

	if err := srv.InjectUnaryError("Acknowledge", codes.Unavailable, "ack backend down", 2); err != nil {
		t.Fatal(err)
	}
	ack := &pb.AcknowledgeRequest{Subscription: sub, AckIds: ackIDs(msgs[:1])}
	for range 2 {
		_, err := c.Acknowledge(ctx, ack)
		wantCode(t, err, codes.Unavailable)
	}
	if _, err := c.Acknowledge(ctx, ack); err != nil {
		t.Fatalf("third Acknowledge: %v", err)
	}

	if err := srv.InjectUnaryError("/google.pubsub.v1.Subscriber/Acknowledge", codes.PermissionDenied, "no", Forever); err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.StreamingPullRequest{AckIds: ackIDs(msgs[1:])}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "both messages acked", func() bool {
		return srv.Message(ids[0]).Acks == 1 && srv.Message(ids[1]).Acks == 1
	})
	for range 3 {
		_, err := c.Acknowledge(ctx, ack)
		wantCode(t, err, codes.PermissionDenied)
	}
	srv.ClearUnaryErrors()
	if _, err := c.Acknowledge(ctx, ack); err != nil {
		t.Fatalf("Acknowledge after ClearUnaryErrors: %v", err)
	}

	conn, err := srv.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := srv.InjectUnaryError("Publish", codes.ResourceExhausted, "quota", 1); err != nil {
		t.Fatal(err)
	}
	pub := pb.NewPublisherClient(conn)
	req := &pb.PublishRequest{Topic: TopicName(srv.Project(), "t"), Messages: []*pb.PubsubMessage{{Data: []byte("x")}}}
	_, err = pub.Publish(ctx, req)
	wantCode(t, err, codes.ResourceExhausted)
	if _, err := pub.Publish(ctx, req); err != nil {
		t.Fatalf("second Publish: %v", err)
	}
	if got := srv.Stats().UnaryErrorsInjected; got != 6 {
		t.Fatalf("UnaryErrorsInjected = %d, want 6", got)
	}
	if got := len(srv.Messages()); got != 3 {
		t.Fatalf("%d messages published, want 3", got)
	}
}

// TestInjectUnaryErrorRefusesBadArguments checks the argument checks.
func TestInjectUnaryErrorRefusesBadArguments(t *testing.T) {
	srv := newServer(t, Config{})
	for _, tt := range []struct {
		method string
		code   codes.Code
		count  int
	}{
		{"Acknowledg", codes.Unavailable, 1},
		{"StreamingPull", codes.Unavailable, 1}, // not unary: FailNextStreams
		{"Acknowledge", codes.OK, 1},
		{"Acknowledge", codes.Unavailable, 0},
		{"Acknowledge", codes.Unavailable, -2},
	} {
		if err := srv.InjectUnaryError(tt.method, tt.code, "", tt.count); err == nil {
			t.Errorf("InjectUnaryError(%q, %v, %d) succeeded", tt.method, tt.code, tt.count)
		}
	}
}

// TestReactorsReachPstest checks that Config.Reactors are pstest's.
func TestReactorsReachPstest(t *testing.T) {
	srv := newServer(t, Config{Reactors: []pstest.ServerReactorOption{
		pstest.WithErrorInjection("ModifyAckDeadline", codes.Internal, "injected by a pstest reactor"),
	}})
	ctx := testContext(t, 30*time.Second)
	c := subscriberClient(t, srv)
	_, err := c.ModifyAckDeadline(ctx, &pb.ModifyAckDeadlineRequest{
		Subscription: SubscriptionName(srv.Project(), "s"), AckIds: []string{"m0:1"}, AckDeadlineSeconds: 10,
	})
	wantCode(t, err, codes.Internal)
}

// TestIdleStreamDoesNotSpin checks that an idle stream polls pstest at a
// growing interval rather than in a loop.
func TestIdleStreamDoesNotSpin(t *testing.T) {
	srv := newServer(t, Config{MaxPollInterval: 5 * time.Second})
	ctx := testContext(t, 30*time.Second)
	c := subscriberClient(t, srv)
	stream := openStream(ctx, t, c, SubscriptionName(srv.Project(), "s"), nil)
	if got := stream.recvFor(t, 500*time.Millisecond); len(got) != 0 {
		t.Fatalf("got %d messages from an empty subscription", len(got))
	}
	// Polls at 0, 1, 3, 7, ... 255 ms, then 511 ms.
	if polls := srv.Stats().Polls; polls < 2 || polls > 12 {
		t.Fatalf("an idle stream polled %d times in 500 ms, want 2 to 12", polls)
	}
}

// TestPublishWakesIdleStream checks that a publish through the emulator
// reaches a waiting stream at once, not at its next poll.
func TestPublishWakesIdleStream(t *testing.T) {
	srv := newServer(t, Config{MinPollInterval: 20 * time.Second, MaxPollInterval: 20 * time.Second})
	ctx := testContext(t, time.Minute)
	c := subscriberClient(t, srv)
	stream := openStream(ctx, t, c, SubscriptionName(srv.Project(), "s"), nil)
	eventually(t, 5*time.Second, "the stream polled once", func() bool { return srv.Stats().EmptyPolls == 1 })
	conn, err := srv.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := pb.NewPublisherClient(conn).Publish(ctx, &pb.PublishRequest{
		Topic: TopicName(srv.Project(), "t"), Messages: []*pb.PubsubMessage{{Data: []byte("wake")}},
	}); err != nil {
		t.Fatal(err)
	}
	stream.recvN(t, 1)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("published message arrived after %v; the stream polls every 20 s, a publish must wake it", d)
	}
}

// TestEverySubscriptionGetsEveryMessage checks that each subscription of a
// topic gets every message, and that publishing to a missing topic fails.
func TestEverySubscriptionGetsEveryMessage(t *testing.T) {
	srv := newServer(t, Config{Subscriptions: []Subscription{{Name: "a", Topic: "t"}, {Name: "b", Topic: "t"}}})
	ctx := testContext(t, 30*time.Second)
	publishN(t, srv, 10)
	c := subscriberClient(t, srv)
	for _, sub := range []string{"a", "b"} {
		got := openStream(ctx, t, c, SubscriptionName(srv.Project(), sub), nil).recvN(t, 10)
		if len(got) != 10 {
			t.Fatalf("subscription %s: got %d messages, want 10", sub, len(got))
		}
	}
	if _, err := srv.Publish(context.Background(), "nope", &pb.PubsubMessage{Data: []byte("x")}); err == nil {
		t.Fatal("publishing to a missing topic succeeded")
	}
}

// TestStreamStats counts one subscription's streams: open, peak, opens and
// their times, by short or full name; streams failed on open and streams of
// another subscription are not counted; the counts survive a Restart.
func TestStreamStats(t *testing.T) {
	srv := newServer(t, Config{Subscriptions: []Subscription{{Name: "s", Topic: "t"}, {Name: "other", Topic: "t"}}})
	ctx := testContext(t, time.Minute)
	c := subscriberClient(t, srv)
	sub := SubscriptionName(srv.Project(), "s")
	if st := srv.StreamStats("s"); st.Open != 0 || st.Peak != 0 || st.Opens != 0 || len(st.OpenTimes) != 0 {
		t.Fatalf("before any stream: %+v, want zero", st)
	}

	srv.FailNextStreams(1, codes.ResourceExhausted, "not counted")
	wantCode(t, openStream(ctx, t, c, sub, nil).end(t), codes.ResourceExhausted)
	other := openStream(ctx, t, c, SubscriptionName(srv.Project(), "other"), nil)
	start := time.Now()
	var streams []*reader
	for range 3 {
		streams = append(streams, openStream(ctx, t, c, sub, nil))
	}
	eventually(t, 10*time.Second, "3 streams open", func() bool { return srv.StreamStats(sub).Open == 3 })
	st := srv.StreamStats("s")
	if st.Open != 3 || st.Peak != 3 || st.Opens != 3 || len(st.OpenTimes) != 3 {
		t.Fatalf("3 streams open: %+v, want open 3, peak 3, opens 3 and 3 open times", st)
	}
	for i, at := range st.OpenTimes {
		if at.Before(start) || (i > 0 && at.Before(st.OpenTimes[i-1])) {
			t.Fatalf("open times %v: want times after %v, oldest first", st.OpenTimes, start)
		}
	}
	if o := srv.StreamStats("other"); o.Open != 1 || o.Opens != 1 {
		t.Fatalf("other subscription: %+v, want 1 open", o)
	}

	// Half-closing ends a stream normally.
	for _, r := range streams {
		if err := r.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if err := r.end(t); err != nil {
			t.Fatalf("half-closed stream: %v, want a normal end", err)
		}
	}
	eventually(t, 10*time.Second, "no stream open", func() bool { return srv.StreamStats(sub).Open == 0 })
	if st := srv.StreamStats(sub); st.Peak != 3 || st.Opens != 3 {
		t.Fatalf("after close: %+v, want peak 3, opens 3", st)
	}
	srv.ResetStreamPeak("s")
	if st := srv.StreamStats(sub); st.Peak != 0 || st.Opens != 3 {
		t.Fatalf("after ResetStreamPeak: %+v, want peak 0, opens 3", st)
	}

	if err := srv.Restart(ctx, RestartOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := other.end(t); err == nil {
		t.Fatal("stream ended normally across a restart, want an error")
	}
	eventually(t, 10*time.Second, "the other subscription's stream gone", func() bool { return srv.StreamStats("other").Open == 0 })
	openStream(ctx, t, c, sub, nil)
	eventually(t, 10*time.Second, "a stream open after the restart", func() bool { return srv.StreamStats(sub).Open == 1 })
	if st := srv.StreamStats(sub); st.Peak != 1 || st.Opens != 4 || len(st.OpenTimes) != 4 {
		t.Fatalf("after the restart: %+v, want open 1, peak 1, opens 4", st)
	}
}

// TestStreamStatsKeepsLastOpenTimes checks that OpenTimes keeps only the last
// MaxOpenTimes opens.
func TestStreamStatsKeepsLastOpenTimes(t *testing.T) {
	var c subStreams
	base := time.Unix(1000, 0)
	const n = 3*MaxOpenTimes + 7
	for i := range n {
		c.opened(base.Add(time.Duration(i)))
		c.open--
	}
	srv := &Server{cfg: Config{Project: "p"}, perSub: map[string]*subStreams{"projects/p/subscriptions/s": &c}}
	st := srv.StreamStats("s")
	if st.Opens != n || st.Peak != 1 || len(st.OpenTimes) != MaxOpenTimes {
		t.Fatalf("%+v (%d times), want %d opens, peak 1, %d times", StreamStats{Open: st.Open, Peak: st.Peak, Opens: st.Opens}, len(st.OpenTimes), n, MaxOpenTimes)
	}
	if first, last := st.OpenTimes[0], st.OpenTimes[MaxOpenTimes-1]; !first.Equal(base.Add(n-MaxOpenTimes)) || !last.Equal(base.Add(n-1)) {
		t.Fatalf("open times from %v to %v, want the last %d", first, last, MaxOpenTimes)
	}
	if len(c.times) > 2*MaxOpenTimes {
		t.Fatalf("holds %d times, want at most %d", len(c.times), 2*MaxOpenTimes)
	}
}
