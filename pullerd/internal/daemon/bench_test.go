package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiv1 "cloud.google.com/go/pubsub/v2/apiv1"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.uber.org/zap"
	"google.golang.org/api/option"
	"google.golang.org/grpc"

	"github.com/pubsub-shm/pubsub-shm/ackd"
	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
	"github.com/pubsub-shm/pubsub-shm/pullerd/internal/testreader"
)

// BenchmarkPipeVsClient compares, on one emulator in one run, the rate at which pullerd
// moves messages into the rings and acks them (a Go reader committing every batch) with
// the rate of a plain Go client that only receives and acks (low-level StreamingPull +
// Acknowledge, the same streams and flow control). Each sub-benchmark publishes a fresh
// backlog per side, alternating the sides, and prints one JSON object per line on stdout:
//
//	{"name":"pullerd","msgs_per_s":...,"bytes_per_s":...,"msg_size":...}
//	{"name":"plain-client",...}
//	{"name":"ratio","ratio":...,"msg_size":...}
//
// Run: go test -run '^$' -bench PipeVsClient -benchtime 1x ./pullerd/internal/daemon
// (PULLBENCH_MESSAGES sets the backlog per run, default 100000).
func BenchmarkPipeVsClient(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("PULLBENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			var pipe, plain []float64
			for i := 0; i < b.N; i++ {
				for round := range 2 {
					srv := newBenchEmulator(b)
					if round%2 == 0 {
						plain = append(plain, runPlain(b, srv, n, size))
						pipe = append(pipe, runPipe(b, srv, n, size))
					} else {
						pipe = append(pipe, runPipe(b, srv, n, size))
						plain = append(plain, runPlain(b, srv, n, size))
					}
					srv.Close()
				}
			}
			pm, cm := mean(pipe), mean(plain)
			emit(map[string]any{"name": "pullerd", "msgs_per_s": pm, "bytes_per_s": pm * float64(size), "msg_size": size, "messages": n, "runs": len(pipe)})
			emit(map[string]any{"name": "plain-client", "msgs_per_s": cm, "bytes_per_s": cm * float64(size), "msg_size": size, "messages": n, "runs": len(plain)})
			emit(map[string]any{"name": "ratio", "ratio": pm / cm, "msg_size": size})
			b.ReportMetric(pm, "pullerd_msgs/s")
			b.ReportMetric(cm, "client_msgs/s")
			b.ReportMetric(pm/cm, "ratio")
		})
	}
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func emit(v map[string]any) {
	line, _ := json.Marshal(v)
	fmt.Println(string(line))
}

func newBenchEmulator(b *testing.B) *emulator.Server {
	srv, err := emulator.New(emulator.Config{Topics: []string{"plain", "pipe"}, AckDeadline: 60 * time.Second,
		Subscriptions: []emulator.Subscription{{Name: "plain-sub", Topic: "plain"}, {Name: "pipe-sub", Topic: "pipe"}}})
	if err != nil {
		b.Fatal(err)
	}
	return srv
}

// publishBacklog publishes n messages of size bytes (and one attribute) to topic.
func publishBacklog(b *testing.B, srv *emulator.Server, topic string, n, size int) {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	for lo := 0; lo < n; lo += 1000 {
		msgs := make([]*pb.PubsubMessage, 0, 1000)
		for i := lo; i < min(n, lo+1000); i++ {
			msgs = append(msgs, &pb.PubsubMessage{Data: payload, Attributes: map[string]string{"i": strconv.Itoa(i)}})
		}
		if _, err := srv.Publish(context.Background(), topic, msgs...); err != nil {
			b.Fatal(err)
		}
	}
}

const benchStreams = 2

// runPlain receives and acks n messages with the low-level client and returns msgs/s.
func runPlain(b *testing.B, srv *emulator.Server, n, size int) float64 {
	publishBacklog(b, srv, "plain", n, size)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := apiv1.NewSubscriptionAdminClient(ctx, append(srv.ClientOptions(),
		option.WithGRPCDialOption(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgBytes))))...)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	sub := emulator.SubscriptionName(srv.Project(), "plain-sub")
	sender := &ackd.Sender{Client: client, Subscription: sub, Backoff: ackd.DefaultBackoff, Log: nopLog}
	var acked atomic.Int64
	ackCh := make(chan []string, 64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ids := range ackCh {
				res, _ := sender.Ack(ctx, ids)
				if acked.Add(int64(res.Succeeded)) >= int64(n) {
					select {
					case <-done:
					default:
						close(done)
					}
				}
			}
		}()
	}
	var rwg sync.WaitGroup
	for range benchStreams {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			pull, err := client.StreamingPull(ctx)
			if err != nil {
				return
			}
			if err := pull.Send(&pb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 60,
				MaxOutstandingMessages: DefaultMaxOutstandingMsgs / benchStreams}); err != nil {
				return
			}
			for {
				resp, err := pull.Recv()
				if err != nil {
					return
				}
				ids := make([]string, 0, len(resp.ReceivedMessages))
				for _, m := range resp.ReceivedMessages {
					ids = append(ids, m.AckId)
				}
				select {
				case ackCh <- ids:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("plain client acked %d of %d in 5 minutes", acked.Load(), n)
	}
	elapsed := time.Since(start)
	cancel()
	rwg.Wait()
	close(ackCh)
	wg.Wait()
	return float64(n) / elapsed.Seconds()
}

// runPipe runs pullerd in-process on the pipe subscription with a Go reader committing
// every batch, and returns msgs/s until pullerd has acked all n.
func runPipe(b *testing.B, srv *emulator.Server, n, size int) float64 {
	publishBacklog(b, srv, "pipe", n, size)
	root, err := os.MkdirTemp("/dev/shm", "pubsub-shm-bench-")
	if err != nil {
		b.Fatal(err)
	}
	os.Chmod(root, 0o700)
	defer os.RemoveAll(root)
	cfg := Config{Dir: root, Partitions: 4, Streams: benchStreams, Stagger: -1, ClientOptions: srv.ClientOptions(),
		Subscriptions: []Sub{{Project: srv.Project(), Subscription: "pipe-sub"}}}
	ready := make(chan string, 1)
	cfg.Ready = func(_, metrics string) { ready <- metrics }
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- Run(ctx, cfg) }()
	var metrics string
	select {
	case metrics = <-ready:
	case err := <-runDone:
		b.Fatalf("pullerd: %v", err)
	}
	// The clock starts when pullerd serves: creating its rings (fallocate of 4 x 64 MiB) is
	// a start-up cost, not throughput. Its streams opened a moment before.
	start := time.Now()
	set, err := testreader.Open(root+"/"+srv.Project()+".pipe-sub", 4, false)
	if err != nil {
		b.Fatal(err)
	}
	readerDone := make(chan struct{})
	stopReader := make(chan struct{})
	go func() {
		defer close(readerDone)
		idle := 0
		for {
			select {
			case <-stopReader:
				return
			default:
			}
			got := false
			for p := range 4 {
				bt, ok, err := set.Poll(p)
				if err != nil {
					panic(err)
				}
				if ok {
					got = true
					if err := set.Commit(p, bt.InstanceID, bt.BatchID, bt.BatchID); err != nil {
						panic(err)
					}
				}
			}
			if got {
				idle = 0
			} else if idle++; idle > 10 {
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Minute)
	for metric(b, metrics, "pullerd_acks_sent_total") < float64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("pullerd acked %v of %d in 5 minutes", metric(b, metrics, "pullerd_acks_sent_total"), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	close(stopReader)
	<-readerDone
	set.Close()
	cancel()
	if err := <-runDone; err != nil {
		b.Fatal(err)
	}
	return float64(n) / elapsed.Seconds()
}

var nopLog = zap.NewNop()
