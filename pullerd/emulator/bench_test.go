package emulator

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.uber.org/zap"
)

// BenchmarkStreamingPull measures how fast one StreamingPull stream drains a
// backlog of b.N messages, acking on the stream. The backlog is published
// before the timer starts; msgs/s is the figure to compare with pstest's own
// StreamingPull (about 100 msg/s per stream).
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
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			stream, err := c.StreamingPull(sctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := stream.Send(&pb.StreamingPullRequest{
				Subscription: SubscriptionName(srv.Project(), "s"), StreamAckDeadlineSeconds: 60,
			}); err != nil {
				b.Fatal(err)
			}
			for got := 0; got < b.N; {
				res, err := stream.Recv()
				if err != nil {
					b.Fatal(err)
				}
				got += len(res.GetReceivedMessages())
				if err := stream.Send(&pb.StreamingPullRequest{AckIds: ackIDs(res.GetReceivedMessages())}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.Logf("N=%d %+v", b.N, srv.Stats())
			cancel()
		})
	}
}
