package emulator

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
)

// published is what the test published, by message ID.
type published struct {
	data        []byte
	attrs       map[string]string
	orderingKey string
}

// publishWithClient publishes n messages with attributes and ordering keys
// to topic "t" through the Go client's Publisher and returns them by ID.
func publishWithClient(ctx context.Context, t *testing.T, client *pubsub.Client, n, keys int) map[string]published {
	t.Helper()
	pub := client.Publisher("t")
	pub.EnableMessageOrdering = true
	pub.PublishSettings.CountThreshold = 1000 // Pub/Sub's maximum batch
	defer pub.Stop()
	rng := rand.New(rand.NewPCG(1, 2))
	msgs := make([]published, n)
	results := make([]*pubsub.PublishResult, n)
	for i := range n {
		data := make([]byte, rng.IntN(600))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		msgs[i] = published{
			data: data,
			attrs: map[string]string{
				"seq":   strconv.Itoa(i),
				"utf8":  "naïve ✓ " + strconv.Itoa(rng.IntN(1000)),
				"empty": "",
			},
			orderingKey: "key-" + strconv.Itoa(i%keys),
		}
		results[i] = pub.Publish(ctx, &pubsub.Message{Data: data, Attributes: msgs[i].attrs, OrderingKey: msgs[i].orderingKey})
	}
	byID := make(map[string]published, n)
	for i, r := range results {
		id, err := r.Get(ctx)
		if err != nil {
			t.Fatalf("publish message %d: %v", i, err)
		}
		byID[id] = msgs[i]
	}
	return byID
}

// TestStreamingPullDeliversEveryMessage publishes 100,000 messages with
// attributes and ordering keys through the Go client's Publisher while two
// StreamingPull streams of the low-level client read them, one acking on the
// stream (under flow control), the other with Acknowledge. Every message must
// arrive intact and end up acked.
func TestStreamingPullDeliversEveryMessage(t *testing.T) {
	const n = 100_000
	srv := newServer(t, Config{})
	ctx := testContext(t, 3*time.Minute)
	client, err := pubsub.NewClient(ctx, srv.Project(), srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	sub := SubscriptionName(srv.Project(), "s")
	var mu sync.Mutex
	got := make(map[string]*pb.PubsubMessage, n)
	duplicates := 0
	done := make(chan struct{})
	record := func(msgs []*pb.ReceivedMessage) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			if _, ok := got[m.GetMessage().GetMessageId()]; ok {
				duplicates++
				continue
			}
			got[m.GetMessage().GetMessageId()] = m.GetMessage()
		}
		if len(got) == n {
			close(done)
		}
	}

	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var wg sync.WaitGroup
	var received [2]int
	errs := make(chan error, 2)
	for i, unaryAcks := range []bool{false, true} {
		req := &pb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 60}
		if !unaryAcks {
			req.MaxOutstandingMessages = 2000
		}
		stream, err := client.SubscriptionAdminClient.StreamingPull(readCtx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				res, err := stream.Recv()
				if err != nil {
					if readCtx.Err() == nil {
						errs <- fmt.Errorf("stream %d: %w", i, err)
					}
					return
				}
				msgs := res.GetReceivedMessages()
				received[i] += len(msgs)
				record(msgs)
				if unaryAcks {
					err = client.SubscriptionAdminClient.Acknowledge(readCtx, &pb.AcknowledgeRequest{Subscription: sub, AckIds: ackIDs(msgs)})
				} else {
					err = stream.Send(&pb.StreamingPullRequest{AckIds: ackIDs(msgs)})
				}
				if err != nil && readCtx.Err() == nil {
					errs <- fmt.Errorf("stream %d: ack: %w", i, err)
					return
				}
			}
		}()
	}

	start := time.Now()
	want := publishWithClient(ctx, t, client, n, 97)
	if len(want) != n {
		t.Fatalf("published %d distinct IDs, want %d", len(want), n)
	}
	t.Logf("published %d messages in %v", n, time.Since(start))
	select {
	case <-done:
	case err := <-errs:
		t.Fatal(err)
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("received %d of %d messages before the deadline", len(got), n)
	}
	elapsed := time.Since(start)

	// Every message must be acked according to pstest. Acks sent on a stream
	// are applied asynchronously.
	eventually(t, 30*time.Second, "every message acked", func() bool {
		for _, m := range srv.Messages() {
			if m.Acks == 0 {
				return false
			}
		}
		return true
	})
	stopReading()
	wg.Wait()
	t.Logf("received %d messages in %v (%d on the stream-acking stream, %d on the other; %d duplicates)",
		n, elapsed, received[0], received[1], duplicates)

	for id, w := range want {
		m, ok := got[id]
		if !ok {
			t.Fatalf("message %s never delivered", id)
		}
		if !bytes.Equal(m.GetData(), w.data) {
			t.Fatalf("message %s: data differs: got %d bytes, want %d", id, len(m.GetData()), len(w.data))
		}
		if !maps.Equal(m.GetAttributes(), w.attrs) {
			t.Fatalf("message %s: attributes %v, want %v", id, m.GetAttributes(), w.attrs)
		}
		if m.GetOrderingKey() != w.orderingKey {
			t.Fatalf("message %s: ordering key %q, want %q", id, m.GetOrderingKey(), w.orderingKey)
		}
	}
	msgs := srv.Messages()
	if len(msgs) != n {
		t.Fatalf("pstest holds %d messages, want %d", len(msgs), n)
	}
	for _, m := range msgs {
		if _, ok := want[m.ID]; !ok {
			t.Fatalf("pstest holds message %s that was not published", m.ID)
		}
		if m.Deliveries < 1 || m.Acks < 1 {
			t.Fatalf("message %s: %d deliveries, %d acks", m.ID, m.Deliveries, m.Acks)
		}
		if len(m.Modacks) != 0 {
			t.Fatalf("message %s: modacks %v, want none (the stream deadline modacks are internal)", m.ID, m.Modacks)
		}
	}
	if received[0] == 0 || received[1] == 0 {
		t.Errorf("a stream received nothing: %v", received)
	}
	t.Logf("stats %+v", srv.Stats())
}

// TestStreamingPullDrainsBacklogInBatches checks that StreamingPull hands out
// a backlog in large batches (pstest's own StreamingPull sends one message per
// stream per 10 ms tick, about 100 msg/s per stream).
func TestStreamingPullDrainsBacklogInBatches(t *testing.T) {
	const n = 20_000
	srv := newServer(t, Config{})
	ctx := testContext(t, time.Minute)
	publishN(t, srv, n)
	c := subscriberClient(t, srv)
	stream := openStream(ctx, t, c, SubscriptionName(srv.Project(), "s"), nil)
	start := time.Now()
	for got := 0; got < n; {
		msgs := stream.next(t).GetReceivedMessages()
		got += len(msgs)
		if err := stream.Send(&pb.StreamingPullRequest{AckIds: ackIDs(msgs)}); err != nil {
			t.Fatal(err)
		}
	}
	rate := float64(n) / time.Since(start).Seconds()
	stats := srv.Stats()
	t.Logf("drained %d messages at %.0f msg/s; stats %+v", n, rate, stats)
	if stats.MessagesSent != n || stats.ResponsesSent > n/DefaultMaxMessagesPerPull+1 {
		t.Errorf("sent %d messages in %d responses, want %d in at most %d", stats.MessagesSent, stats.ResponsesSent, n, n/DefaultMaxMessagesPerPull+1)
	}
	// The rate is logged, not asserted (speed is measured in BenchmarkStreamingPull): the
	// batching above is what makes it fast, and it is checked by counts.
}

// TestStreamingPullHighLevelSubscriber checks that the Go client's
// Subscriber.Receive works against the emulator's StreamingPull.
func TestStreamingPullHighLevelSubscriber(t *testing.T) {
	const n = 2000
	srv := newServer(t, Config{})
	ctx := testContext(t, time.Minute)
	ids := publishN(t, srv, n)
	client, err := pubsub.NewClient(ctx, srv.Project(), srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sub := client.Subscriber("s")
	sub.ReceiveSettings.MaxOutstandingMessages = 300
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]bool{}
	err = sub.Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		seen[m.ID] = true
		if len(seen) == n {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if len(seen) != n {
		t.Fatalf("received %d of %d messages", len(seen), n)
	}
	eventually(t, 30*time.Second, "every message acked", func() bool {
		for _, id := range ids {
			if srv.Message(id).Acks == 0 {
				return false
			}
		}
		return true
	})
}

// TestStreamingPullOrdering checks that an ordered subscription delivers each
// key's messages in publish order, one at a time.
func TestStreamingPullOrdering(t *testing.T) {
	const keys, perKey = 8, 100
	srv := newServer(t, Config{Subscriptions: []Subscription{{Name: "s", Topic: "t", EnableMessageOrdering: true}}})
	ctx := testContext(t, time.Minute)
	for i := range perKey {
		var msgs []*pb.PubsubMessage
		for k := range keys {
			msgs = append(msgs, &pb.PubsubMessage{Data: []byte(strconv.Itoa(i)), OrderingKey: "k" + strconv.Itoa(k)})
		}
		if _, err := srv.Publish(ctx, "t", msgs...); err != nil {
			t.Fatal(err)
		}
	}
	c := subscriberClient(t, srv)
	stream := openStream(ctx, t, c, SubscriptionName(srv.Project(), "s"), nil)
	next := map[string]int{}
	for total := 0; total < keys*perKey; {
		res := stream.next(t)
		if !res.GetSubscriptionProperties().GetMessageOrderingEnabled() {
			t.Fatal("response does not say that ordering is enabled")
		}
		inBatch := map[string]bool{}
		for _, m := range res.GetReceivedMessages() {
			key := m.GetMessage().GetOrderingKey()
			if inBatch[key] {
				t.Fatalf("two messages of key %s outstanding at once", key)
			}
			inBatch[key] = true
			if got := string(m.GetMessage().GetData()); got != strconv.Itoa(next[key]) {
				t.Fatalf("key %s: got message %s, want %d", key, got, next[key])
			}
			next[key]++
			total++
		}
		if err := stream.Send(&pb.StreamingPullRequest{AckIds: ackIDs(res.GetReceivedMessages())}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStreamingPullFlowControlMessages checks max_outstanding_messages: the
// stream stops at the limit and resumes as messages are acked or nacked.
func TestStreamingPullFlowControlMessages(t *testing.T) {
	srv := newServer(t, Config{})
	ctx := testContext(t, time.Minute)
	publishN(t, srv, 100)
	c := subscriberClient(t, srv)
	sub := SubscriptionName(srv.Project(), "s")
	stream := openStream(ctx, t, c, sub, &pb.StreamingPullRequest{MaxOutstandingMessages: 10})

	first := stream.recvN(t, 10)
	if extra := stream.recvFor(t, 200*time.Millisecond); len(extra) != 0 {
		t.Fatalf("got %d messages beyond max_outstanding_messages=10", len(extra))
	}
	// Acks on the stream return credit.
	if err := stream.Send(&pb.StreamingPullRequest{AckIds: ackIDs(first[:4])}); err != nil {
		t.Fatal(err)
	}
	second := stream.recvN(t, 4)
	if extra := stream.recvFor(t, 200*time.Millisecond); len(extra) != 0 {
		t.Fatalf("got %d messages beyond the 4 acked", len(extra))
	}
	// So do acks by Acknowledge, and nacks by ModifyAckDeadline 0.
	if _, err := c.Acknowledge(ctx, &pb.AcknowledgeRequest{Subscription: sub, AckIds: ackIDs(first[4:6])}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ModifyAckDeadline(ctx, &pb.ModifyAckDeadlineRequest{Subscription: sub, AckIds: ackIDs(second), AckDeadlineSeconds: 0}); err != nil {
		t.Fatal(err)
	}
	third := stream.recvN(t, 6)
	if extra := stream.recvFor(t, 200*time.Millisecond); len(extra) != 0 {
		t.Fatalf("got %d messages beyond the 6 settled", len(extra))
	}
	// An extension does not return credit.
	if err := stream.Send(&pb.StreamingPullRequest{ModifyDeadlineAckIds: ackIDs(third), ModifyDeadlineSeconds: []int32{30, 30, 30, 30, 30, 30}}); err != nil {
		t.Fatal(err)
	}
	if extra := stream.recvFor(t, 200*time.Millisecond); len(extra) != 0 {
		t.Fatalf("got %d messages after extending leases", len(extra))
	}
}

// TestStreamingPullFlowControlBytes checks max_outstanding_bytes: like
// Pub/Sub, the stream stops once the outstanding bytes reach the limit.
func TestStreamingPullFlowControlBytes(t *testing.T) {
	srv := newServer(t, Config{})
	ctx := testContext(t, time.Minute)
	var msgs []*pb.PubsubMessage
	for range 50 {
		msgs = append(msgs, &pb.PubsubMessage{Data: bytes.Repeat([]byte{'x'}, 1000)})
	}
	if _, err := srv.Publish(ctx, "t", msgs...); err != nil {
		t.Fatal(err)
	}
	c := subscriberClient(t, srv)
	stream := openStream(ctx, t, c, SubscriptionName(srv.Project(), "s"), &pb.StreamingPullRequest{MaxOutstandingBytes: 3500})
	got := stream.recvFor(t, 300*time.Millisecond)
	// Each message is a little over 1000 bytes: three stay under the limit,
	// the fourth reaches it.
	if len(got) < 3 || len(got) > 4 {
		t.Fatalf("got %d messages of ~1 kB with max_outstanding_bytes=3500, want 3 or 4", len(got))
	}
	if err := stream.Send(&pb.StreamingPullRequest{AckIds: ackIDs(got)}); err != nil {
		t.Fatal(err)
	}
	more := stream.recvFor(t, 300*time.Millisecond)
	if len(more) < 3 || len(more) > 4 {
		t.Fatalf("after acking, got %d more messages, want 3 or 4", len(more))
	}
}

// TestStreamingPullAckDeadline checks that the stream's ack deadline, not the
// subscription's, governs redelivery, that a stream modack extends it and a
// stream nack ends it, and that these show in Messages as pstest records them.
func TestStreamingPullAckDeadline(t *testing.T) {
	srv := newServer(t, Config{Subscriptions: []Subscription{{Name: "s", Topic: "t", AckDeadline: 60 * time.Second}}})
	ctx := testContext(t, time.Minute)
	ids := publishN(t, srv, 3)
	c := subscriberClient(t, srv)
	stream := openStream(ctx, t, c, SubscriptionName(srv.Project(), "s"), &pb.StreamingPullRequest{StreamAckDeadlineSeconds: 1})
	first := stream.recvN(t, 3)
	delivered := time.Now()
	byData := map[string]*pb.ReceivedMessage{}
	for _, m := range first {
		byData[string(m.GetMessage().GetData())] = m
	}
	// m0 is extended, m1 nacked, m2 left to expire after 1 s.
	if err := stream.Send(&pb.StreamingPullRequest{
		ModifyDeadlineAckIds:  []string{byData["m0"].GetAckId(), byData["m1"].GetAckId()},
		ModifyDeadlineSeconds: []int32{30, 0},
	}); err != nil {
		t.Fatal(err)
	}
	again := stream.recvN(t, 1)
	if got := string(again[0].GetMessage().GetData()); got != "m1" || time.Since(delivered) > 900*time.Millisecond {
		t.Fatalf("first redelivery is %s after %v, want the nacked m1 at once", got, time.Since(delivered))
	}
	if err := stream.Send(&pb.StreamingPullRequest{AckIds: ackIDs(again)}); err != nil {
		t.Fatal(err)
	}
	again = stream.recvN(t, 1)
	if got := string(again[0].GetMessage().GetData()); got != "m2" {
		t.Fatalf("second redelivery is %s, want m2", got)
	}
	if waited := time.Since(delivered); waited < 900*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("m2 redelivered after %v; the stream deadline is 1 s and the subscription's 60 s", waited)
	}
	if err := stream.Send(&pb.StreamingPullRequest{AckIds: ackIDs(again)}); err != nil {
		t.Fatal(err)
	}
	if extra := stream.recvFor(t, 1500*time.Millisecond); len(extra) != 0 {
		t.Fatalf("extended m0 redelivered: %d messages", len(extra))
	}
	m0, m1, m2 := srv.Message(ids[0]), srv.Message(ids[1]), srv.Message(ids[2])
	if m0.Deliveries != 1 || m0.Acks != 0 || len(m0.Modacks) != 1 || m0.Modacks[0].AckDeadline != 30 {
		t.Errorf("m0: %d deliveries, %d acks, modacks %+v; want 1 delivery and the client's modack to 30 s", m0.Deliveries, m0.Acks, m0.Modacks)
	}
	if m1.Deliveries != 2 || m1.Acks != 1 || len(m1.Modacks) != 1 || m1.Modacks[0].AckDeadline != 0 {
		t.Errorf("m1: %d deliveries, %d acks, modacks %+v; want 2 deliveries, 1 ack and the client's nack", m1.Deliveries, m1.Acks, m1.Modacks)
	}
	if m2.Deliveries != 2 || m2.Acks != 1 || len(m2.Modacks) != 0 {
		t.Errorf("m2: %d deliveries, %d acks, modacks %+v; want 2 deliveries, 1 ack and no modack", m2.Deliveries, m2.Acks, m2.Modacks)
	}
}

// TestStreamingPullPing checks that a keepalive request is answered with an
// empty response under protocol version 1, as Pub/Sub and pstest do.
func TestStreamingPullPing(t *testing.T) {
	srv := newServer(t, Config{})
	ctx := testContext(t, 30*time.Second)
	c := subscriberClient(t, srv)
	stream := openStream(ctx, t, c, SubscriptionName(srv.Project(), "s"), &pb.StreamingPullRequest{ProtocolVersion: 1})
	if err := stream.Send(&pb.StreamingPullRequest{}); err != nil {
		t.Fatal(err)
	}
	res := stream.next(t)
	if len(res.GetReceivedMessages()) != 0 {
		t.Fatalf("ping answered with %d messages", len(res.GetReceivedMessages()))
	}
}

// TestStreamingPullInvalidRequests checks the requests Pub/Sub refuses.
func TestStreamingPullInvalidRequests(t *testing.T) {
	srv := newServer(t, Config{})
	c := subscriberClient(t, srv)
	sub := SubscriptionName(srv.Project(), "s")
	tests := []struct {
		name    string
		initial *pb.StreamingPullRequest
		next    *pb.StreamingPullRequest
		code    codes.Code
	}{
		{"no subscription", &pb.StreamingPullRequest{StreamAckDeadlineSeconds: 10}, nil, codes.InvalidArgument},
		{"unknown subscription", &pb.StreamingPullRequest{Subscription: "projects/p/subscriptions/nope", StreamAckDeadlineSeconds: 10}, nil, codes.NotFound},
		{"no ack deadline", &pb.StreamingPullRequest{Subscription: sub}, nil, codes.InvalidArgument},
		{"ack deadline too long", &pb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 601}, nil, codes.InvalidArgument},
		{"flow control on a later request",
			&pb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 10},
			&pb.StreamingPullRequest{MaxOutstandingMessages: 5}, codes.InvalidArgument},
		{"modack arrays differ",
			&pb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 10},
			&pb.StreamingPullRequest{ModifyDeadlineAckIds: []string{"a", "b"}, ModifyDeadlineSeconds: []int32{1}}, codes.InvalidArgument},
		{"modack deadline too long",
			&pb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 10},
			&pb.StreamingPullRequest{ModifyDeadlineAckIds: []string{"a"}, ModifyDeadlineSeconds: []int32{601}}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t, 10*time.Second)
			stream, err := c.StreamingPull(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tt.initial); err != nil {
				t.Fatal(err)
			}
			if tt.next != nil {
				if err := stream.Send(tt.next); err != nil {
					t.Fatal(err)
				}
			}
			wantCode(t, newReader(t, stream).end(t), tt.code)
		})
	}
}

// TestStreamingPullLargeMessagesSplitResponses checks that responses stay
// under MaxResponseBytes, so that plain gRPC clients with the default 4 MiB
// receive limit can read them.
func TestStreamingPullLargeMessagesSplitResponses(t *testing.T) {
	srv := newServer(t, Config{MaxResponseBytes: 1 << 20})
	ctx := testContext(t, 30*time.Second)
	payload := bytes.Repeat([]byte{'z'}, 300<<10)
	var msgs []*pb.PubsubMessage
	for range 20 {
		msgs = append(msgs, &pb.PubsubMessage{Data: payload})
	}
	if _, err := srv.Publish(ctx, "t", msgs...); err != nil {
		t.Fatal(err)
	}
	c := subscriberClient(t, srv)
	stream := openStream(ctx, t, c, SubscriptionName(srv.Project(), "s"), nil)
	for total := 0; total < 20; {
		res := stream.next(t)
		if n := len(res.GetReceivedMessages()); n > 3 {
			t.Fatalf("one response carries %d messages of 300 KiB with MaxResponseBytes=1 MiB", n)
		}
		total += len(res.GetReceivedMessages())
	}
}

// TestStreamingPullAfterDeleteSubscription checks that streams of a deleted
// subscription end with NOT_FOUND.
func TestStreamingPullAfterDeleteSubscription(t *testing.T) {
	srv := newServer(t, Config{})
	ctx := testContext(t, 30*time.Second)
	c := subscriberClient(t, srv)
	sub := SubscriptionName(srv.Project(), "s")
	stream := openStream(ctx, t, c, sub, nil)
	eventually(t, 5*time.Second, "stream open", func() bool { return srv.Stats().StreamsActive == 1 })
	if _, err := c.DeleteSubscription(ctx, &pb.DeleteSubscriptionRequest{Subscription: sub}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, stream.end(t), codes.NotFound)
}
