package emulator

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkStreamingPull measures how fast one StreamingPull stream drains a
// backlog of b.N messages, acking on the stream. The backlog is published
// before the timer starts. Throughput falls as the backlog grows (see the
// package documentation), so compare runs with the same -benchtime=Nx.
func BenchmarkStreamingPull(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("size=%dB", size), func(b *testing.B) {
			srv := newServer(b, Config{Logger: zap.NewNop()})
			ctx := testContext(b, 10*time.Minute)
			payload := bytes.Repeat([]byte{'p'}, size)
			for start := 0; start < b.N; start += 1000 {
				var msgs []*pb.PubsubMessage
				for range min(1000, b.N-start) {
					msgs = append(msgs, &pb.PubsubMessage{Data: payload, Attributes: map[string]string{"k": "v"}})
				}
				if _, err := srv.Publish(ctx, "t", msgs...); err != nil {
					b.Fatal(err)
				}
			}
			c := subscriberClient(b, srv)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			responses := drain(ctx, b, c, SubscriptionName(srv.Project(), "s"), b.N)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N)/float64(responses), "msgs/response")
		})
	}
}

// BenchmarkPstestStreamingPull is the baseline: the same drain through
// pstest's own StreamingPull, which the emulator replaces.
func BenchmarkPstestStreamingPull(b *testing.B) {
	fake := pstest.NewServerWithAddress("127.0.0.1:0")
	defer fake.Close()
	ctx := testContext(b, 10*time.Minute)
	topic, sub := "projects/p/topics/t", "projects/p/subscriptions/s"
	if _, err := fake.GServer.CreateTopic(ctx, &pb.Topic{Name: topic}); err != nil {
		b.Fatal(err)
	}
	if _, err := fake.GServer.CreateSubscription(ctx, &pb.Subscription{Name: sub, Topic: topic}); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		fake.Publish(topic, bytes.Repeat([]byte{'p'}, 100), map[string]string{"k": "v"})
	}
	conn, err := grpc.NewClient(fake.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	b.ResetTimer()
	responses := drain(ctx, b, pb.NewSubscriberClient(conn), sub, b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/float64(responses), "msgs/response")
}

// drain reads n messages from sub on one stream, acking each response on the
// stream, and returns how many responses carried them.
func drain(ctx context.Context, b *testing.B, c pb.SubscriberClient, sub string, n int) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.StreamingPull(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := stream.Send(&pb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 60}); err != nil {
		b.Fatal(err)
	}
	responses := 0
	for got := 0; got < n; {
		res, err := stream.Recv()
		if err != nil {
			b.Fatal(err)
		}
		if len(res.GetReceivedMessages()) == 0 {
			continue
		}
		responses++
		got += len(res.GetReceivedMessages())
		if err := stream.Send(&pb.StreamingPullRequest{AckIds: ackIDs(res.GetReceivedMessages())}); err != nil {
			b.Fatal(err)
		}
	}
	return responses
}
