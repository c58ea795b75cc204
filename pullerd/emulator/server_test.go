package emulator

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// TestNewListensOnLoopback checks the default address and the resolved
// names of the pre-created resources.
func TestNewListensOnLoopback(t *testing.T) {
	srv := newServer(t, Config{Project: "p", Topics: []string{"t", "projects/other/topics/u"},
		Subscriptions: []Subscription{{Name: "s", Topic: "t"}, {Name: "projects/other/subscriptions/v", Topic: "projects/other/topics/u"}}})
	host, port, err := net.SplitHostPort(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %q, want 127.0.0.1 and a chosen port", srv.Addr())
	}
	ctx := testContext(t, 10*time.Second)
	c := subscriberClient(t, srv)
	for name, topic := range map[string]string{
		"projects/p/subscriptions/s":     "projects/p/topics/t",
		"projects/other/subscriptions/v": "projects/other/topics/u",
	} {
		sub, err := c.GetSubscription(ctx, &pb.GetSubscriptionRequest{Subscription: name})
		if err != nil {
			t.Fatalf("GetSubscription(%s): %v", name, err)
		}
		if sub.GetTopic() != topic || sub.GetAckDeadlineSeconds() != 10 {
			t.Fatalf("subscription %s: topic %s, ack deadline %d s; want %s, 10 s", name, sub.GetTopic(), sub.GetAckDeadlineSeconds(), topic)
		}
	}
}

// TestNewRefusesBadConfig checks that New names the bad field.
func TestNewRefusesBadConfig(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Addr: "nope"}, "bad Addr"},
		{Config{Project: "a/b"}, "bad Project"},
		{Config{Topics: []string{"projects/p/topics"}}, "bad topic name"},
		{Config{Subscriptions: []Subscription{{Name: "s"}}}, "no topic"},
		{Config{Subscriptions: []Subscription{{Name: "s", Topic: "projects/p/subs/t"}}}, "bad topic name"},
		{Config{Topics: []string{"t"}, Subscriptions: []Subscription{{Name: "s", Topic: "t", AckDeadline: 1500 * time.Millisecond}}}, "ack deadline"},
		{Config{AckDeadline: 601 * time.Second}, "bad AckDeadline"},
		{Config{MaxMessagesPerPull: -1}, "bad MaxMessagesPerPull"},
		{Config{MinPollInterval: time.Second, MaxPollInterval: time.Millisecond}, "bad poll intervals"},
		{Config{Subscriptions: []Subscription{{Name: "s", Topic: "missing"}}}, "NotFound"},
	} {
		srv, err := New(tt.cfg)
		if err == nil {
			_ = srv.Close()
			t.Errorf("New(%+v) succeeded, want an error containing %q", tt.cfg, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

// TestEmulatorHostEnvironment checks that the Go client finds the emulator
// through PUBSUB_EMULATOR_HOST alone.
func TestEmulatorHostEnvironment(t *testing.T) {
	srv := newServer(t, Config{})
	t.Setenv("PUBSUB_EMULATOR_HOST", srv.Addr())
	ctx := testContext(t, 30*time.Second)
	client, err := pubsub.NewClient(ctx, srv.Project())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	pub := client.Publisher("t")
	defer pub.Stop()
	id, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("via env")}).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := srv.Message(id); m == nil || string(m.Data) != "via env" {
		t.Fatalf("Message(%s) = %+v", id, m)
	}
}

// TestRestartKeepsState restarts the server under a live stream: the stream
// breaks, the client reconnects to the same address, and the messages not
// acked before the restart are redelivered.
func TestRestartKeepsState(t *testing.T) {
	const n = 50
	srv := newServer(t, Config{})
	ctx := testContext(t, time.Minute)
	ids := publishN(t, srv, n)
	c := subscriberClient(t, srv)
	sub := SubscriptionName(srv.Project(), "s")
	addr := srv.Addr()

	first := openStream(ctx, t, c, sub, &pb.StreamingPullRequest{StreamAckDeadlineSeconds: 1})
	msgs := first.recvN(t, n)
	if err := first.Send(&pb.StreamingPullRequest{AckIds: ackIDs(msgs[:20])}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "20 acks", func() bool {
		acked := 0
		for _, m := range srv.Messages() {
			acked += m.Acks
		}
		return acked == 20
	})
	if err := srv.Restart(ctx, RestartOptions{Downtime: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := first.end(t); err == nil {
		t.Fatal("stream ended normally across a restart, want an error")
	}
	if srv.Addr() != addr {
		t.Fatalf("Addr changed across Restart: %s, then %s", addr, srv.Addr())
	}
	second := openStream(ctx, t, c, sub, nil)
	seen := map[string]bool{}
	for len(seen) < n-20 {
		got := second.recvN(t, 1)
		for _, m := range got {
			seen[m.GetMessage().GetMessageId()] = true
		}
		if err := second.Send(&pb.StreamingPullRequest{AckIds: ackIDs(got)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "every message acked once", func() bool {
		for _, id := range ids {
			if srv.Message(id).Acks != 1 {
				return false
			}
		}
		return true
	})
}

// TestRestartResetsState checks that ResetState starts from the Config's
// resources only.
func TestRestartResetsState(t *testing.T) {
	srv := newServer(t, Config{})
	ctx := testContext(t, 30*time.Second)
	publishN(t, srv, 10)
	if err := srv.CreateTopic(ctx, "extra"); err != nil {
		t.Fatal(err)
	}
	old := srv.Fake()
	if err := srv.Restart(ctx, RestartOptions{ResetState: true}); err != nil {
		t.Fatal(err)
	}
	if srv.Fake() == old {
		t.Fatal("Fake unchanged by a state reset")
	}
	if got := len(srv.Messages()); got != 0 {
		t.Fatalf("%d messages after a state reset, want 0", got)
	}
	if _, err := srv.Publish(ctx, "extra", &pb.PubsubMessage{Data: []byte("x")}); err == nil {
		t.Fatal("topic created before the reset still exists")
	}
	publishN(t, srv, 1)
	c := subscriberClient(t, srv)
	got := openStream(ctx, t, c, SubscriptionName(srv.Project(), "s"), nil).recvN(t, 1)
	if string(got[0].GetMessage().GetData()) != "m0" {
		t.Fatalf("got %q after the reset, want m0", got[0].GetMessage().GetData())
	}
}

// TestClose checks that Close is idempotent, that the server refuses work
// afterwards, and that its messages can still be inspected.
func TestClose(t *testing.T) {
	srv, err := New(Config{Topics: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, srv, 3)
	addr := srv.Addr()
	for range 2 {
		if err := srv.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	srv.Wait()
	if _, err := srv.Publish(context.Background(), "t", &pb.PubsubMessage{Data: []byte("x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	if err := srv.Restart(context.Background(), RestartOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Restart after Close: %v, want ErrClosed", err)
	}
	if got := len(srv.Messages()); got != 3 {
		t.Fatalf("%d messages after Close, want 3", got)
	}
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = conn.Close()
		t.Fatalf("%s still accepts connections after Close", addr)
	}
}
