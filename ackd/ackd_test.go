package ackd

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apiv1 "cloud.google.com/go/pubsub/v2/apiv1"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	gax "github.com/googleapis/gax-go/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pubsub-shm/pubsub-shm/ringbuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

func TestChunksLimits(t *testing.T) {
	ids := make([]string, 6000)
	for i := range ids {
		ids[i] = fmt.Sprintf("ack-%05d", i)
	}
	chunks := Chunks(ids, 50)
	if len(chunks) != 3 || len(chunks[0]) != MaxAckIDsPerRequest || len(chunks[2]) != 1000 {
		t.Fatalf("chunk sizes %d", len(chunks))
	}
	big := make([]string, 1000)
	for i := range big {
		big[i] = strings.Repeat("x", 1000) + fmt.Sprint(i)
	}
	total := 0
	for _, c := range Chunks(big, 50) {
		size := 50
		for _, id := range c {
			size += len(id) + perAckIDOverheadBytes
		}
		if size > MaxRequestBytes {
			t.Fatalf("chunk of %d bytes", size)
		}
		// The request really is under the limit once encoded.
		if n := proto.Size(&pb.AcknowledgeRequest{Subscription: "projects/p/subscriptions/s", AckIds: c}); n > MaxRequestBytes {
			t.Fatalf("encoded request %d bytes", n)
		}
		total += len(c)
	}
	if total != len(big) {
		t.Fatalf("lost ids: %d of %d", total, len(big))
	}
	if Chunks(nil, 10) != nil {
		t.Fatal("chunks of nothing")
	}
}

func TestBackoffJitter(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	for attempt, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		want *= time.Millisecond
		for range 20 {
			if d := b.Delay(attempt); d < want/2 || d > want {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

// fakeSubscriber is a gRPC Subscriber server whose Acknowledge answers are scripted.
type fakeSubscriber struct {
	pb.UnimplementedSubscriberServer
	mu      sync.Mutex
	answers []func(req *pb.AcknowledgeRequest) error // consumed in order, then success
	acked   map[string]int
	calls   int
}

func (f *fakeSubscriber) Acknowledge(ctx context.Context, req *pb.AcknowledgeRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.answers) > 0 {
		a := f.answers[0]
		f.answers = f.answers[1:]
		if err := a(req); err != nil {
			return nil, err
		}
	}
	for _, id := range req.AckIds {
		f.acked[id]++
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeSubscriber) ModifyAckDeadline(ctx context.Context, req *pb.ModifyAckDeadlineRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range req.AckIds {
		f.acked["modack:"+id]++
	}
	return &emptypb.Empty{}, nil
}

// startFake serves f on loopback and returns a generated client connected to it.
func startFake(t *testing.T, f *fakeSubscriber) *apiv1.SubscriptionAdminClient {
	t.Helper()
	f.acked = map[string]int{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterSubscriberServer(gs, f)
	go gs.Serve(lis)
	c, err := apiv1.NewSubscriptionAdminClient(context.Background(), option.WithEndpoint(lis.Addr().String()),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication(), option.WithTelemetryDisabled())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		gs.Stop()
	})
	return c
}

// exactlyOnceError is what Pub/Sub returns when some ack IDs of an exactly-once
// subscription fail: ErrorInfo metadata maps each failed ack ID to its reason.
func exactlyOnceError(code codes.Code, failures map[string]string) error {
	st := status.New(code, "some ack ids failed")
	st, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "EXACTLY_ONCE_ACKID_FAILURE", Domain: "pubsub.googleapis.com", Metadata: failures})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// TestExactlyOnceResults: transient per-ack-ID failures are retried (only those IDs),
// permanent ones are counted and not retried, and transient codes retry whole requests.
func TestExactlyOnceResults(t *testing.T) {
	f := &fakeSubscriber{}
	f.answers = []func(*pb.AcknowledgeRequest) error{
		func(*pb.AcknowledgeRequest) error { return status.Error(codes.Unavailable, "blip") },
		func(req *pb.AcknowledgeRequest) error {
			return exactlyOnceError(codes.InvalidArgument, map[string]string{
				"a1": "TRANSIENT_FAILURE_UNORDERED_ACK_ID",
				"a2": "PERMANENT_FAILURE_INVALID_ACK_ID",
				"a3": "TRANSIENT_FAILURE_UNORDERED_ACK_ID",
			})
		},
		func(req *pb.AcknowledgeRequest) error {
			if len(req.AckIds) != 2 {
				return fmt.Errorf("retry carried %v, want only the transient a1, a3", req.AckIds)
			}
			return nil
		},
	}
	client := startFake(t, f)
	m := NewMetrics(nil, nil)
	s := &Sender{Client: client, Subscription: "projects/p/subscriptions/s", Backoff: Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2},
		Log: zaptest.NewLogger(t), Metrics: m}
	// a0 is unlisted in an INVALID_ARGUMENT answer: failed for good, like Pub/Sub's clients.
	res, err := s.Ack(context.Background(), []string{"a0", "a1", "a2", "a3"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Succeeded != 2 || res.Failed != 2 || res.Retries != 2 {
		t.Fatalf("result %+v, want 2 succeeded (a1, a3), 2 failed (a0, a2), 2 retries", res)
	}
	if f.acked["a1"] != 1 || f.acked["a3"] != 1 || f.acked["a2"] != 0 || f.calls != 3 {
		t.Fatalf("server saw %v in %d calls", f.acked, f.calls)
	}
	if n := testutil.ToFloat64(m.AckFailures.WithLabelValues("PERMANENT_FAILURE_INVALID_ACK_ID")); n != 1 {
		t.Fatalf("permanent failures counted %v", n)
	}
}

// TestPermanentCodeNotRetried: Acknowledge retries only transient codes.
func TestPermanentCodeNotRetried(t *testing.T) {
	f := &fakeSubscriber{answers: []func(*pb.AcknowledgeRequest) error{
		func(*pb.AcknowledgeRequest) error { return status.Error(codes.PermissionDenied, "no") },
	}}
	client := startFake(t, f)
	s := &Sender{Client: client, Subscription: "projects/p/subscriptions/s", Backoff: DefaultBackoff, Log: zaptest.NewLogger(t)}
	res, err := s.Ack(context.Background(), []string{"x", "y"})
	if err != nil || res.Failed != 2 || res.Retries != 0 || f.calls != 1 {
		t.Fatalf("res %+v err %v calls %d", res, err, f.calls)
	}
}

// fakeClient records calls; ack blocks until release is closed if set.
type fakeClient struct {
	mu    sync.Mutex
	acks  []string
	nacks []string
	hold  chan struct{}
}

func (c *fakeClient) Acknowledge(ctx context.Context, req *pb.AcknowledgeRequest, _ ...gax.CallOption) error {
	if c.hold != nil {
		select {
		case <-c.hold:
		case <-ctx.Done():
			return status.Error(codes.Canceled, "cancelled")
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acks = append(c.acks, req.AckIds...)
	return nil
}

func (c *fakeClient) ModifyAckDeadline(ctx context.Context, req *pb.ModifyAckDeadlineRequest, _ ...gax.CallOption) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if req.AckDeadlineSeconds == 0 {
		c.nacks = append(c.nacks, req.AckIds...)
	}
	return nil
}

func (c *fakeClient) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acks), len(c.nacks)
}

func commitRing(t *testing.T) *ringbuf.Ring {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "pubsub-shm-ackd-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o700)
	t.Cleanup(func() { os.RemoveAll(d) })
	r, err := ringbuf.Create(filepath.Join(d, "commit.ring"), ringbuf.CreateOptions{Kind: ringbuf.KindCommit, Capacity: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func batchOf(id int64, n int) *Batch {
	var bd Builder
	for i := range n {
		bd.Add(fmt.Sprintf("b%d-m%d", id, i), 10, time.Now())
	}
	return bd.Take(id)
}

// TestAckdSettles: COMMIT records are acked, NACK records nacked, unknown and stale ones
// counted; a batch leaves its table only once its ack succeeded.
func TestAckdSettles(t *testing.T) {
	ring := commitRing(t)
	held := &Held{}
	table := NewTable(0, 42, held)
	for id := int64(1); id <= 5; id++ {
		table.Put(batchOf(id, 3), time.Now().Add(time.Minute))
		held.Add(3, 30)
	}
	client := &fakeClient{hold: make(chan struct{})}
	m := NewMetrics(nil, nil)
	a, err := New(Config{Ring: ring, Sender: &Sender{Client: client, Subscription: "projects/p/subscriptions/s", Backoff: DefaultBackoff, Log: zaptest.NewLogger(t), Metrics: m},
		Tables: func(p int32) *Table {
			if p == 0 {
				return table
			}
			return nil
		}, Log: zaptest.NewLogger(t), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	w, _ := ringbuf.NewCommitWriter(ring)
	write := func(typ ringbuf.CommitType, p int32, inst uint64, first, last int64) {
		if err := w.TryWrite(ringbuf.CommitRecord{Type: typ, Partition: p, DataInstanceID: inst, FirstBatchID: first, LastBatchID: last}); err != nil {
			t.Fatal(err)
		}
	}
	write(ringbuf.CommitTypeCommit, 0, 42, 1, 2)
	write(ringbuf.CommitTypeCommit, 0, 43, 3, 3)  // stale instance
	write(ringbuf.CommitTypeCommit, 0, 42, 9, 10) // unknown batches
	write(ringbuf.CommitTypeCommit, 5, 42, 1, 1)  // unknown partition
	waitFor(t, func() bool {
		return testutil.ToFloat64(m.StaleCommits) == 1 && testutil.ToFloat64(m.UnknownBatches) == 3
	})
	// The ack of batches 1-2 is in flight: they are still in the table.
	if n, _, _ := table.Stats(); n != 5 {
		t.Fatalf("table has %d batches while the ack is in flight, want 5", n)
	}
	close(client.hold)
	waitFor(t, func() bool { n, _, _ := table.Stats(); return n == 3 })
	write(ringbuf.CommitTypeNack, 0, 42, 3, 4)
	write(ringbuf.CommitTypeCommit, 0, 42, 1, 1) // committed twice: unknown now
	waitFor(t, func() bool { n, _, _ := table.Stats(); return n == 1 && testutil.ToFloat64(m.UnknownBatches) == 4 })
	acks, nacks := client.counts()
	if acks != 6 || nacks != 6 {
		t.Fatalf("acks %d nacks %d, want 6 and 6", acks, nacks)
	}
	if held.Msgs.Load() != 3 || held.Bytes.Load() != 30 {
		t.Fatalf("held %d msgs %d bytes, want batch 5's 3 and 30", held.Msgs.Load(), held.Bytes.Load())
	}
	a.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	left := table.TakeUnclaimed()
	if len(left) != 1 || left[0].ID != 5 || left[0].AckID(2) != "b5-m2" {
		t.Fatalf("left %v", left)
	}
}

// TestAckdStopCutShort: when ctx ends during an ack, the batches go back to the table.
func TestAckdStopCutShort(t *testing.T) {
	ring := commitRing(t)
	table := NewTable(0, 7, nil)
	table.Put(batchOf(1, 2), time.Now().Add(time.Minute))
	client := &fakeClient{hold: make(chan struct{})}
	a, err := New(Config{Ring: ring, Sender: &Sender{Client: client, Subscription: "s", Backoff: DefaultBackoff, Log: zaptest.NewLogger(t)},
		Tables: func(int32) *Table { return table }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	w, _ := ringbuf.NewCommitWriter(ring)
	if err := w.TryWrite(ringbuf.CommitRecord{Type: ringbuf.CommitTypeCommit, DataInstanceID: 7, FirstBatchID: 1, LastBatchID: 1}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
	if got := table.TakeUnclaimed(); len(got) != 1 {
		t.Fatalf("batch not given back: %v", got)
	}
}

func TestTableLeases(t *testing.T) {
	table := NewTable(0, 1, nil)
	now := time.Now()
	table.Put(batchOf(1, 1), now.Add(time.Second))
	table.Put(batchOf(2, 1), now.Add(time.Minute))
	due := table.DueForLease(now, 10*time.Second, now.Add(time.Minute), nil)
	if len(due) != 1 || due[0].ID != 1 {
		t.Fatalf("due %v", due)
	}
	if due := table.DueForLease(now, 10*time.Second, now.Add(time.Minute), nil); len(due) != 0 {
		t.Fatalf("extended lease due again: %v", due)
	}
	claimed, missing := table.Claim(1, 1000, nil)
	if len(claimed) != 2 || missing != 998 {
		t.Fatalf("claim over a wide range: %d claimed, %d missing", len(claimed), missing)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
